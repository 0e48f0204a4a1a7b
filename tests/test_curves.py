"""curves.png: checked by content; drawn during training by a helper process within its CPU
budget and complete when training returns; matplotlib never loaded by --help, inspect, predict,
evaluate or the training process itself."""

import io
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from cnncli.model import checkpoint
from cnncli.engine.progress import QuietReporter
from cnncli.commands.train import train
from cnncli.viz import live
from cnncli.viz.curves import write_curves
from cnncli.viz.figure import TRAIN, VAL

from .test_train import write_config

@pytest.fixture(autouse=True)
def curves_on(monkeypatch):
    """conftest turns the helper off for the rest of the suite; these tests are about it."""
    monkeypatch.setenv("CNNCLI_CURVES", "1")


HISTORY = [{"epoch": e, "train_loss": 1.4 / e, "train_acc": 0.3 + 0.12 * e, "val_loss": 1.2 / e + 0.02,
            "val_acc": 0.35 + 0.11 * e, "lr": 0.002 * (1 - e / 6)} for e in range(1, 6)]


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def near(img, hex_colour, tol=40):
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img - rgb).sum(axis=-1) < tol).sum())


def test_curves_picture_by_content(tmp_path):
    png = write_curves(tmp_path / "a.png", HISTORY, "runs/demo", best_epoch=4)
    assert (tmp_path / "a.png").read_bytes() == png
    img = pixels(png)
    assert img.shape == (340, 1100, 3)                            # 11 x 3.4 inches at 100 dpi
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100       # not one colour
    assert near(img, TRAIN) > 300 and near(img, VAL) > 300        # the training and validation lines
    assert write_curves(tmp_path / "b.png", HISTORY, "runs/demo", best_epoch=4) == png   # deterministic
    # one point moved: the picture changes inside the loss panel's plot only; the title, the axes'
    # labels and ticks and the other two panels are drawn exactly as before
    moved = [dict(r) for r in HISTORY]
    moved[2]["val_loss"] += 0.05
    diff = np.argwhere((pixels(write_curves(tmp_path / "c.png", moved, "runs/demo", best_epoch=4)) != img).any(axis=-1))
    assert len(diff) > 20
    top, left = diff.min(axis=0)
    bottom, right = diff.max(axis=0)
    assert top > 60 and bottom < 300 and left > 55 and right < 360, (top, bottom, left, right)
    # the title and the x axis' label are there: dark text in the title band and under the plots
    assert (img[:25, 450:650].sum(axis=-1) < 200).sum() > 50
    assert (img[315:, 150:260].sum(axis=-1) < 200).sum() > 20
    other = pixels(write_curves(tmp_path / "d.png", HISTORY, "runs/other", best_epoch=4))
    assert (other[:25] != img[:25]).any() and (other[25:] == img[25:]).all()


def test_curves_of_a_run_without_validation_and_of_one_epoch(tmp_path):
    rows = [{**r, "val_loss": None, "val_acc": None} for r in HISTORY[:1]]
    img = pixels(write_curves(tmp_path / "a.png", rows, "one epoch"))
    assert near(img, TRAIN) > 10 and near(img, VAL) == 0


def test_training_writes_the_curves_of_every_epoch(tmp_path):
    res = train(write_config(tmp_path), reporter=QuietReporter())
    drawn = (res.output / "curves.png").read_bytes()
    _, meta = checkpoint.load(res.output / "last.npz")
    history = meta["state"]["history"]
    assert len(history) == 3
    expected = write_curves(tmp_path / "expected.png", history, str(res.output), res.state.best["epoch"])
    np.testing.assert_array_equal(pixels(drawn), pixels(expected))   # the last epoch's state, drawn
    assert not [p for p in res.output.iterdir() if p.name.endswith(".tmp")]   # no temporary file left


def test_the_helper_keeps_to_its_budget_and_draws_the_end(monkeypatch):
    """Rows arriving faster than the budget allows are coalesced; the last rows are drawn at once
    when the input closes."""
    drawings = []

    def fake_write(path, rows, title, best):
        start = time.thread_time()
        while time.thread_time() - start < 0.02:   # 20 ms of CPU: the next drawing waits 0.4 s
            pass
        drawings.append((time.monotonic(), len(rows), best))

    monkeypatch.setattr("cnncli.viz.curves.write_curves", fake_write)
    read, write = os.pipe()
    server = threading.Thread(target=live.serve, args=("x.png", "t", os.fdopen(read, "rb")))
    server.start()
    with os.fdopen(write, "wb", buffering=0) as pipe:
        for e in range(1, 13):
            pipe.write(b'{"row": {"epoch": %d}}\n{"best_epoch": %d}\n' % (e, e))
            time.sleep(0.02)
    server.join(10)
    assert not server.is_alive()
    assert 2 <= len(drawings) < 12                      # coalesced, not one drawing per row
    assert drawings[-1][1:] == (12, 12)                 # the end drawn, with every row
    for (t0, *_), (t1, *_) in zip(drawings[:-2], drawings[1:-1]):
        assert t1 - t0 >= 0.02 / live.BUDGET * 0.9      # spaced by cost / budget (the final one excepted)


def test_a_helper_that_cannot_start_or_fails_is_one_warning(tmp_path, monkeypatch):
    said, python = [], sys.executable
    monkeypatch.setattr(live.sys, "executable", str(tmp_path / "no-python"))
    curves = live.LiveCurves(tmp_path / "curves.png", "t", warn=said.append)
    curves.update(HISTORY[:1], 1)
    curves.close()
    assert len(said) == 1 and said[0].startswith("warning: curves.png not drawn: cannot start the drawing process")
    monkeypatch.setattr(live.sys, "executable", python)
    said.clear()
    curves = live.LiveCurves(tmp_path / "missing-folder" / "curves.png", "t", warn=said.append)
    curves.update(HISTORY, 4)
    curves.close()
    assert len(said) == 1 and "the drawing process failed (CnnError: cannot write curves" in said[0]


def test_the_helper_starts_before_the_kernels_load_and_imports_matplotlib_first(tmp_path, monkeypatch):
    """`cnncli train` starts the helper before it decodes the data and loads the kernels, and the
    helper imports matplotlib before it waits for rows: not during the first epochs, where it
    took a core from the training step (viz/live.py)."""
    import cnncli.commands.train as train_module

    order = []

    def recorded(name, fn):
        def call(*a):
            order.append(name)
            return fn(*a)
        return call

    monkeypatch.setattr(live.LiveCurves, "start", recorded("helper", live.LiveCurves.start))
    monkeypatch.setattr(train_module, "_prepare", recorded("data", train_module._prepare))
    monkeypatch.setattr(train_module, "_warm_up", recorded("kernels", train_module._warm_up))
    res = train(write_config(tmp_path), reporter=QuietReporter())
    assert order[:3] == ["helper", "data", "kernels"]
    assert (res.output / "curves.png").exists()

    loaded = []
    monkeypatch.setattr("cnncli.viz.figure.preload", lambda: loaded.append("matplotlib"))
    live.serve(str(tmp_path / "none.png"), "t", io.BytesIO(b""))    # no row: imports, draws nothing
    assert loaded == ["matplotlib"] and not (tmp_path / "none.png").exists()


def test_a_helper_sent_no_row_is_stopped_not_waited_for(tmp_path):
    """A run that fails before its first epoch ends has nothing to draw: its helper is killed
    (exit by SIGKILL, not the 0 of a helper that drew and ended), no warning, no picture; a
    second close does nothing."""
    import signal

    said = []
    curves = live.LiveCurves(tmp_path / "curves.png", "t", warn=said.append)
    curves.start()
    proc = curves.proc
    curves.close()
    assert proc.returncode == -signal.SIGKILL
    assert said == [] and not (tmp_path / "curves.png").exists()
    curves.close()
    curves.update(HISTORY, 4)         # after close: no new helper
    assert curves.proc is None


def test_an_error_after_the_helper_started_stops_it_and_writes_nothing(tmp_path, monkeypatch):
    import cnncli.commands.train as train_module
    from cnncli.errors import CnnError

    helpers, started = [], live.LiveCurves.start

    def start(self):
        started(self)
        helpers.append(self.proc)

    def bad_data(*a):
        raise CnnError("no images")

    monkeypatch.setattr(live.LiveCurves, "start", start)
    monkeypatch.setattr(train_module, "_prepare", bad_data)
    with pytest.raises(CnnError, match="no images"):
        train(write_config(tmp_path), reporter=QuietReporter())
    assert len(helpers) == 1 and helpers[0].returncode == -9    # started, then killed: nothing to draw
    assert not (tmp_path / "run").exists()


PROBE = r"""
import sys
from typer.testing import CliRunner
from cnncli.cli.app import app
run = CliRunner().invoke
ckpt, data, cfg = sys.argv[1:4]
for args in (["--help"], ["inspect", cfg], ["predict", ckpt, data], ["evaluate", ckpt, data],
             ["train", cfg, "--quiet"]):
    res = run(app, args)
    assert res.exit_code == 0, (args, res.output)
    assert "matplotlib" not in sys.modules, args
print("matplotlib stayed out")
"""


def test_matplotlib_stays_out_of_help_inspect_predict_evaluate_and_the_trainer(tmp_path):
    cfg = write_config(tmp_path)
    res = train(write_config(tmp_path, name="first"), reporter=QuietReporter())
    out = subprocess.run([sys.executable, "-c", PROBE, str(res.output / "best.npz"), str(tmp_path / "data"), str(cfg)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "matplotlib stayed out" in out.stdout, out.stdout + out.stderr
    assert (tmp_path / "run" / "curves.png").exists()      # drawn, by the helper


def test_an_interrupted_run_leaves_the_curves_of_its_finished_epochs(tmp_path):
    from cnncli.engine.trainer import Interrupted

    from .test_train import InterruptAt

    cfg = write_config(tmp_path)
    with pytest.raises(Interrupted):
        train(cfg, reporter=InterruptAt(1, 2))              # a real SIGINT in epoch 2
    one = pixels((tmp_path / "run" / "curves.png").read_bytes())
    res = train(resume=tmp_path / "run", reporter=QuietReporter())
    history = checkpoint.load(res.output / "last.npz")[1]["state"]["history"]
    expected = write_curves(tmp_path / "e.png", history[:1], str(tmp_path / "run"), 1)
    np.testing.assert_array_equal(one, pixels(expected))
    assert (pixels((res.output / "curves.png").read_bytes()) != one).any()   # the resumed run redrew all three


def test_ctrl_c_in_a_terminal_reaches_the_trainer_not_the_helper(tmp_path):
    """A terminal's Ctrl-C goes to the whole foreground process group: the trainer saves and
    exits 130, and the helper, in a session of its own, still draws the epochs that finished."""
    import signal

    cfg = write_config(tmp_path, epochs=200)
    env = dict(os.environ, CNNCLI_CURVES="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "cnncli", "train", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    for line in proc.stdout:
        if line.startswith("epoch 2/"):
            break
    os.killpg(proc.pid, signal.SIGINT)                     # as a terminal does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "warning" not in err, err
    history = checkpoint.load(tmp_path / "run" / "last.npz")[1]["state"]["history"]
    best = max(history, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"]
    expected = write_curves(tmp_path / "e.png", history, str(tmp_path / "run"), best)
    np.testing.assert_array_equal(pixels((tmp_path / "run" / "curves.png").read_bytes()), pixels(expected))
