"""The first hour of a new user, through the CLI: init --data, hints that point the right way,
what was converted, names from other tools, output that survives a pipe, Ctrl-C in order,
extending a finished run, and honest shipped configs."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.errors import CnnError
from cnncli.engine.progress import PlainReporter, QuietReporter
from cnncli.commands.train import train

from .imagegen import make_folder

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cnncli"]


def run(*args, env=None):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_init_data_fits_the_folder_and_trains(tmp_path):
    make_folder(tmp_path / "photos" / "train", per_class=16, size=28)
    make_folder(tmp_path / "photos" / "val", per_class=4, size=28, seed=1)
    res = run("init", tmp_path / "cfg", "--data", tmp_path / "photos")
    assert res.returncode == 0, res.stderr
    assert "3 classes (a, b, c)" in res.stdout and "typically 28x28" in res.stdout
    model = yaml.safe_load((tmp_path / "cfg" / "model.yaml").read_text())
    cfg = yaml.safe_load((tmp_path / "cfg" / "train.yaml").read_text())
    assert model["input"] == [32, 32, 3]                   # 28 rounds to 32
    assert model["layers"][-1] == {"dense": {"units": 3, "activation": "softmax"}}
    assert cfg["data"]["train"].endswith("photos/train") and cfg["data"]["val"].endswith("photos/val")
    assert cfg["train"]["optimizer"] == "adamw" and cfg["train"]["schedule"] == "cosine"
    # the measured recipe (README, "Training recipes"): a random warp per image, and longer training
    # flip on: these are colour images (chosen from the data: tests/test_new_user.py)
    assert cfg["data"]["augment"] == {"rotate": 10, "scale": [0.9, 1.1], "translate": 0.1, "shear": 10, "flip": True}
    assert cfg["train"]["epochs"] == 60
    trained = run("train", tmp_path / "cfg" / "train.yaml", "-q", "--set", "train.epochs=2",
                  "--set", f"output={tmp_path / 'run'}", env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert trained.returncode == 0, trained.stderr


def test_init_data_grayscale_and_no_split(tmp_path):
    root = tmp_path / "scans"
    for k, name in enumerate(("x", "y")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((9, 7), 40 * k + i, np.uint8), "L").save(root / name / f"{i}.png")
    res = run("init", tmp_path / "cfg", "--data", root)
    assert res.returncode == 0, res.stderr
    model = yaml.safe_load((tmp_path / "cfg" / "model.yaml").read_text())
    cfg = yaml.safe_load((tmp_path / "cfg" / "train.yaml").read_text())
    assert model["input"] == [16, 16, 1]                   # all grayscale; small scans go to 16
    assert cfg["data"]["val_split"] == 0.1 and "val" not in cfg["data"]


def test_parent_folder_of_splits_gets_did_you_mean(tmp_path):
    make_folder(tmp_path / "shapes" / "train", per_class=4)
    make_folder(tmp_path / "shapes" / "val", per_class=2)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"input": [12, 12, 3], "layers": [
        "flatten", {"dense": {"units": 3, "activation": "softmax"}}]}, "data": {"train": str(tmp_path / "shapes")},
        "output": str(tmp_path / "run")}))
    res = run("train", cfg)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert f"did you mean {tmp_path / 'shapes' / 'train'}?" in res.stderr


def test_what_was_converted_is_said_once(tmp_path):
    make_folder(tmp_path / "data", per_class=6, size=12)
    Image.fromarray(np.zeros((20, 30), np.uint8), "L").save(tmp_path / "data" / "a" / "gray.png")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"input": [16, 16, 3], "layers": [
        "flatten", {"dense": {"units": 3, "activation": "softmax"}}]},
        "data": {"train": str(tmp_path / "data"), "cache_dir": str(tmp_path / "cache")},
        "train": {"epochs": 1}, "output": str(tmp_path / "run")}))
    res = run("train", cfg)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("converted:")]
    assert lines == ["converted: 19 image(s) resized from 12x12 ... 30x20 to 16x16; "
                     "1 grayscale image(s) repeated to RGB"]
    ev = run("evaluate", tmp_path / "run" / "best.npz", tmp_path / "data")
    assert "converted: 19 image(s) resized" in ev.stdout
    js = run("predict", tmp_path / "run" / "best.npz", tmp_path / "data" / "a" / "gray.png", "--json")
    assert '"converted": "resized from 30x20 to 16x16; grayscale to RGB"' in js.stdout
    table = run("predict", tmp_path / "run" / "best.npz", tmp_path / "data" / "a")
    assert table.stderr.count("note:") == 1 and "resized" not in table.stdout


@pytest.mark.parametrize("text,hint", [
    ("  - Conv2D: {filters: 4}\n", "did you mean 'conv'?"),
    ("  - conv: {filters: 4, kernel_size: 3}\n", "did you mean 'size'?"),
    ("  - conv: {filters: 4, strides: 2}\n", "did you mean 'stride'?"),
    ("  - conv: {units: 4}\n", "did you mean 'filters'?"),
    ("  - flatten\n  - dense: {filters: 2, activation: softmax}\n", "did you mean 'units'?"),
    ("  - flatten\n  - dropout: {p: 0.5}\n", "did you mean 'rate'?"),
    ("  - MaxPooling2D: {size: 2}\n", "did you mean 'maxpool'?"),
    ("  - BatchNormalization\n", "did you mean 'batchnorm'?"),
])
def test_names_from_keras_and_pytorch(tmp_path, text, hint):
    path = tmp_path / "m.yaml"
    path.write_text("input: [8, 8, 1]\nlayers:\n" + text)
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert res.exit_code == 2 and hint in res.output


def test_training_key_names_from_other_tools(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("model: {input: [8, 8, 1], layers: [flatten, {dense: {units: 2, activation: softmax}}]}\n"
                    "train: {learning_rate: 0.1, optimizer: Adam}\n")
    res = CliRunner().invoke(app, ["inspect", str(path)])
    assert "did you mean 'lr'?" in res.output
    path.write_text(path.read_text().replace("learning_rate", "lr"))
    assert "did you mean 'adam'?" in CliRunner().invoke(app, ["inspect", str(path)]).output


def test_set_into_the_layers_of_a_model_file():
    res = CliRunner().invoke(app, ["inspect", "--json", str(ROOT / "configs" / "mnist.yaml"),
                                   "--set", "model.layers.7.units=5", "--set", "model.layers.0.filters=4"])
    assert res.exit_code == 0, res.output
    import json
    rows = json.loads(res.output)["layers"]
    assert rows[-1]["output_shape"] == [5] and rows[0]["output_shape"][-1] == 4
    bad = CliRunner().invoke(app, ["inspect", str(ROOT / "configs" / "mnist.yaml"), "--set", "model.layers.7.unit=5"])
    assert bad.exit_code == 2 and "layers[7] (dense): unknown key 'unit' (did you mean 'units'?)" in bad.output


def test_output_survives_a_pipe():
    piped = run("inspect", ROOT / "configs" / "models" / "explainer.yaml")
    assert "…" not in piped.stdout and "196,609,000" in piped.stdout
    helped = run("--help")
    commands = helped.stdout.split("Commands:")[1].splitlines()
    assert not [line for line in commands if line.endswith("...")]   # no command's help cut short
    assert "Classify images with a trained checkpoint." in helped.stdout
    from cnncli import __version__
    assert run("--version").stdout.strip() == __version__


def _config(tmp_path, **train_kw):
    data = tmp_path / "data"
    if not data.exists():
        make_folder(data, per_class=12)
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"model": {"input": [12, 12, 3], "layers": [
        {"conv": {"filters": 4, "size": 3, "activation": "relu"}}, "flatten",
        {"dense": {"units": 3, "activation": "softmax"}}]},
        "data": {"train": str(data), "val_split": 0.25, "cache_dir": str(tmp_path / "cache")},
        "train": {"epochs": 2, "batch_size": 5, "lr": 0.01, **train_kw}, "output": str(tmp_path / "run")}))
    return path


class Recorder(PlainReporter):
    def __init__(self):
        super().__init__()
        self.lines = []

    def message(self, text):
        self.lines.append(text)


def test_ctrl_c_during_validation_is_said_in_order(tmp_path, monkeypatch):
    import cnncli.engine.trainer as trainer
    from cnncli.engine.trainer import Interrupted

    real = trainer.validate

    def validate_then_ctrl_c(model, batches, *dist):
        import signal
        out = real(model, batches, *dist)
        signal.raise_signal(signal.SIGINT)   # Ctrl-C while epoch 1 validates
        return out
    monkeypatch.setattr(trainer, "validate", validate_then_ctrl_c)
    rec = Recorder()
    with pytest.raises(Interrupted, match="interrupted after epoch 1; saved"):
        train(_config(tmp_path, epochs=3), reporter=rec)
    stop = next(i for i, line in enumerate(rec.lines) if line.startswith("stopping"))
    assert rec.lines[stop].startswith("stopping after this epoch's validation")
    assert [line for line in rec.lines[stop + 1:] if line.startswith("epoch ")] == [rec.lines[stop + 1]]
    assert rec.lines[stop + 1].startswith("epoch 1/3")    # the epoch that was validating, then nothing more
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 1


def test_extending_a_finished_cosine_run_restarts_the_schedule_and_says_so(tmp_path):
    train(_config(tmp_path, schedule="cosine"), reporter=QuietReporter())
    rec = Recorder()
    train(resume=tmp_path / "run", overrides=["train.epochs=4"], reporter=rec)
    assert any("the cosine schedule restarts for the 2 added epochs, from lr 0.01 down to 0" in line
               for line in rec.lines)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[1] < 0.05 * 0.01            # the first run ended its cosine near 0
    assert lrs[2] > 0.4 * 0.01             # the added epochs start a new cosine from lr
    with pytest.raises(CnnError, match="already finished"):
        train(resume=tmp_path / "run", reporter=QuietReporter())


def test_label_smoothing_labels_the_loss(tmp_path):
    rec = Recorder()
    train(_config(tmp_path, label_smoothing=0.1), reporter=rec)
    epochs = [line for line in rec.lines if line.startswith("epoch ")]
    assert epochs and all("loss (smoothed) " in line for line in epochs)
    from cnncli.config import Augment, Train
    from cnncli.engine.trainer import loss_name
    assert loss_name(Train(), Augment(cutmix=1.0)) == "loss (mixed)"       # soft targets: above val_loss too
    assert loss_name(Train(label_smoothing=0.1), Augment(mixup=0.2)) == "loss (smoothed, mixed)"


def test_shipped_configs_never_choose_best_on_a_test_folder():
    for path in (ROOT / "configs").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        val = (raw.get("data") or {}).get("val")
        assert val is None or "test" not in Path(val).parts, f"{path.name}: data.val is a test folder"


def test_init_data_quotes_paths_and_ignores_hidden_folders(tmp_path):
    root = tmp_path / "my data #2"
    make_folder(root / "train", per_class=4)
    make_folder(root / "val", per_class=2)
    (root / ".ipynb_checkpoints").mkdir()
    res = run("init", tmp_path / "cfg", "--data", root)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((tmp_path / "cfg" / "train.yaml").read_text())
    # relative to train.yaml's folder (tests/test_new_user.py); the output under runs/ where init ran
    assert cfg["data"]["train"] == "../my data #2/train" and cfg["data"]["val"] == "../my data #2/val"
    assert cfg["output"] == str(Path.cwd() / "runs" / "my data #2")


def test_force_keeps_the_old_run_when_the_kernel_warm_up_fails(tmp_path, monkeypatch):
    import cnncli.commands.train as train_mod

    cfg = _config(tmp_path)
    train(cfg, reporter=QuietReporter())
    before = (tmp_path / "run" / "last.npz").read_bytes()

    def interrupted(arch, model, images):
        raise KeyboardInterrupt   # Ctrl-C during a first run's long compile
    monkeypatch.setattr(train_mod, "warm_up", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, force=True, reporter=QuietReporter())
    assert (tmp_path / "run" / "last.npz").read_bytes() == before


def test_a_network_too_big_to_run_is_one_line_before_the_old_run_is_touched(tmp_path, monkeypatch):
    """The warm-up runs the user's own network on two images: out of memory there is one line
    naming the input size and the fix, and --force has not cleared the earlier run."""
    import cnncli.commands.train as train_mod
    from cnncli.errors import CnnError

    cfg = _config(tmp_path)
    train(cfg, reporter=QuietReporter())
    before = (tmp_path / "run" / "last.npz").read_bytes()

    def too_big(arch, model, images):
        raise MemoryError
    monkeypatch.setattr(train_mod, "warm_up", too_big)
    with pytest.raises(CnnError, match=r"out of memory running the network on 2 image\(s\) of \d+x\d+x\d+: lower "
                                       r"model.input"):
        train(cfg, force=True, reporter=QuietReporter())
    assert (tmp_path / "run" / "last.npz").read_bytes() == before
