"""Faults and kills: nothing finished is lost, every failure is one clear line.

The slowest kill trials are marked `slow` (run them with `pytest -m slow`); a few run in CI."""

import errno
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from cnncli.model import checkpoint
from cnncli.model.checkpoint import CheckpointError
from cnncli.errors import CnnError
from cnncli.engine.progress import QuietReporter
from cnncli.commands.train import train

from .imagegen import blob_image, make_folder
from .test_train import assert_same_weights, weights, write_config


def _env(tmp_path):
    return dict(os.environ, CNNCLI_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")


def _cli(*args, env, **kw):
    return subprocess.Popen([sys.executable, "-m", "cnncli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# --- kills ------------------------------------------------------------------------------------

def _kill_trial(tmp_path, delay, reference):
    cfg = write_config(tmp_path, "killed", epochs=4)
    out = tmp_path / "killed"
    proc = _cli("train", cfg, "--force", env=_env(tmp_path))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    last = out / "last.npz"
    if last.exists():
        checkpoint.load(last)                                   # loadable, whatever the moment
        proc = _cli("train", "--resume", out, env=_env(tmp_path))
        _, err = proc.communicate()
        assert proc.returncode in (0, 2), err
        if proc.returncode == 2:
            assert "already finished" in err                    # killed after the last epoch
    else:
        proc = _cli("train", cfg, "--force", env=_env(tmp_path))
        assert proc.wait() == 0
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert_same_weights(reference, weights(out))


def _reference(tmp_path):
    res = train(write_config(tmp_path, "ref", epochs=4), reporter=QuietReporter())
    return weights(res.output)


@pytest.mark.parametrize("delay", [0.6, 1.2, 2.0])
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, delay):
    _kill_trial(tmp_path, delay, _reference(tmp_path))


@pytest.mark.parametrize("finished", [True, False])
def test_a_writer_killed_mid_write_leaves_no_temporary_file_after_the_next_run(tmp_path, finished):
    """A SIGKILL between opening and renaming a checkpoint's temporary file leaves it behind (the
    atomic write's only trace); the next process to lock the folder removes it, also when all it
    says is that the run already finished. On the old code it stayed (a kill 0.6 s into the
    run above met it)."""
    cfg = write_config(tmp_path, "run", epochs=1)
    out = train(cfg, reporter=QuietReporter()).output
    stale = out / ".last.npz.another-host-4242.tmp"
    stale.write_bytes(b"half a checkpoint")
    if finished:
        with pytest.raises(CnnError, match="already finished"):
            train(resume=out, reporter=QuietReporter())
    else:
        train(resume=out, overrides=["train.epochs=2"], reporter=QuietReporter())
    assert not stale.exists()
    assert checkpoint.load(out / "last.npz")


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path):
    ref = _reference(tmp_path)
    rng = random.Random(0)
    for _ in range(12):
        _kill_trial(tmp_path, rng.uniform(0.3, 3.0), ref)


# --- Ctrl-C -----------------------------------------------------------------------------------

def _start_and_wait_for_epoch(tmp_path, epochs=200):
    cfg = write_config(tmp_path, "int", epochs=epochs)
    proc = _cli("train", cfg, env=_env(tmp_path))
    for line in proc.stdout:
        if line.startswith("epoch 1/"):
            return proc, tmp_path / "int"
    raise AssertionError(proc.stderr.read())


def test_ctrl_c_saves_and_exits_130_then_resumes(tmp_path):
    proc, out = _start_and_wait_for_epoch(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"cnncli train --resume {out}" in err and "Traceback" not in err
    meta = checkpoint.load(out / "last.npz")[1]
    assert meta["state"]["epoch"] >= 1
    resumed = train(resume=out, overrides=["train.epochs=" + str(meta["state"]["epoch"] + 1)],
                    reporter=QuietReporter())
    assert resumed.state.epoch == meta["state"]["epoch"] + 1


def test_second_ctrl_c_exits_at_once_without_damage(tmp_path):
    proc, out = _start_and_wait_for_epoch(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    checkpoint.load(out / "last.npz")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- disks and permissions --------------------------------------------------------------------

def test_disk_full_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, epochs=1)
    train(cfg, reporter=QuietReporter())
    before = weights(tmp_path / "run")
    real = np.savez

    def full(f, **arrays):
        real(f, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(CnnError, match="cannot write checkpoint .*No space left on device.*previous last.npz is intact"):
        train(resume=tmp_path / "run", overrides=["train.epochs=2"], reporter=QuietReporter())
    monkeypatch.undo()
    assert_same_weights(before, weights(tmp_path / "run"))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_output_folder_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    cfg = write_config(tmp_path, epochs=1)
    with pytest.raises(CnnError, match="cannot write to output folder .*pick a writable folder"):
        train(cfg, overrides=[f"output={blocker / 'run'}"], reporter=QuietReporter())
    proc = _cli("train", cfg, "--set", f"output={blocker / 'run'}", env=_env(tmp_path))
    _, err = proc.communicate()
    assert proc.returncode == 2 and err.count("\n") == 1


# --- caches -------------------------------------------------------------------------------------

def test_two_runs_at_once_share_caches_safely(tmp_path):
    env = dict(_env(tmp_path), NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    procs = [_cli("train", write_config(tmp_path, name, epochs=2), env=env) for name in ("p1", "p2")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert_same_weights(weights(tmp_path / "p1"), weights(tmp_path / "p2"))
    again = train(write_config(tmp_path, "p3", epochs=2), reporter=QuietReporter())
    assert_same_weights(weights(tmp_path / "p1"), weights(again.output))


# --- images -----------------------------------------------------------------------------------

def _zoo(root):
    """Every kind of file a real folder holds; returns the names that must be skipped."""
    rng = np.random.default_rng(0)
    a, b = root / "a", root / "b"
    make_folder(root, classes=("a", "b"), per_class=6)
    big = Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8))
    big.save(a / "good.jpg", quality=90)
    (a / "trunc.jpg").write_bytes((a / "good.jpg").read_bytes()[:400])
    png = a / "img0.png"
    (a / "trunc.png").write_bytes(png.read_bytes()[:60])
    (a / "zero.png").write_bytes(b"")
    (a / "text.png").write_text("just text")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(b / "one_pixel.png")
    Image.fromarray(rng.integers(0, 255, (3000, 2000, 3), np.uint8)).save(b / "large.jpg")
    Image.new("CMYK", (20, 20), (0, 200, 200, 0)).save(b / "cmyk.jpg")
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(b / "sixteen.png")
    p = Image.new("P", (20, 20), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.save(b / "palette.png", transparency=0)
    frames = [blob_image(rng, 1, 20), blob_image(rng, 0, 20)]
    frames[0].save(b / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    exif = Image.Exif()
    exif[0x0112] = 8
    blob_image(rng, 1, 20).save(b / "rotated.jpg", exif=exif)
    Image.new("L", (20, 20), 128).save(b / "gray.png")
    Image.new("RGBA", (20, 20), (0, 0, 255, 128)).save(b / "alpha.png")
    Image.new("L", (9000, 9000)).save(b / "bomb.png", optimize=True)   # 81 Mpx: over the limit below
    return {"trunc.jpg", "trunc.png", "zero.png", "text.png", "bomb.png"}


@pytest.mark.parametrize("channels", [1, 3])
def test_a_folder_of_every_kind_of_file_trains(tmp_path, monkeypatch, channels):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000_000)  # the default is 89 Mpx; keep the test small
    bad = _zoo(tmp_path / "data")
    cfg = write_config(tmp_path, epochs=1)
    raw = yaml.safe_load(cfg.read_text())
    raw["model"]["input"] = [12, 12, channels]
    raw["model"]["layers"][-1]["dense"]["units"] = 2           # two classes: a, b
    cfg.write_text(yaml.safe_dump(raw))
    res = train(cfg, reporter=QuietReporter())
    skipped = {p.rsplit("/", 1)[-1]: reason for p, reason in res.skipped}
    assert set(skipped) == bad, skipped
    listed = (res.output / "skipped.txt").read_text()
    assert all(name in listed for name in bad)
    assert "decompression-bomb" in skipped["bomb.png"]


def test_checkpoint_bit_flips_never_load_silently_wrong(tmp_path):
    res = train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    good = (res.output / "best.npz").read_bytes()
    original = weights(res.output, "best.npz")
    rng = random.Random(1)
    outcomes = {"refused": 0, "harmless": 0}
    for trial in range(150):
        b = bytearray(good)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        path = tmp_path / f"flip{trial}.npz"
        path.write_bytes(bytes(b))
        try:
            arrays = checkpoint.load_model(path)[2]
        except CheckpointError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
            continue
        assert_same_weights(original, {k: v for k, v in arrays.items()})   # a flip in zip metadata only
        outcomes["harmless"] += 1
    assert outcomes["refused"] > 100, outcomes
