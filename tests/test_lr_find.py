"""lr-find: the sweep, the valley rule, and that it writes only its picture and depends on no run."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.lr_find import lr_find, rates, smooth, valley
from cnncli.engine.progress import QuietReporter
from cnncli.commands.train import train

from .test_train import write_config


def test_rates_are_geometric_from_start_to_end():
    r = rates(1e-7, 10, 100)
    assert len(r) == 100 and r[0] == pytest.approx(1e-7) and r[-1] == pytest.approx(10)
    np.testing.assert_allclose(r[1:] / r[:-1], (1e8) ** (1 / 99))


def test_smoothing_is_bias_corrected():
    np.testing.assert_allclose(smooth([2.0] * 10), 2.0)           # no pull towards 0 at the start
    s = smooth([1.0, 3.0])
    assert s[0] == 1.0 and 1.0 < s[1] < 3.0


def test_valley_is_half_way_along_the_longest_fall():
    # flat, then a long fall over steps 10..40 with a bump at 25, then a blow-up
    loss = [2.0] * 10 + list(np.linspace(2.0, 1.0, 31)[1:]) + [3.0, 5.0, 9.0]
    loss[25] = 1.9                                                 # a noisy step inside the fall
    i, (start, end) = valley(np.array(loss))
    assert start <= 10 and end == 39                               # the longest decreasing run
    assert i == start + (end - start) // 2
    assert valley(np.array([3.0, 2.0, 1.0]))[0] == 1


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_lr_find_writes_only_its_picture_and_does_not_depend_on_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path, epochs=2)
    first = lr_find(cfg, out=tmp_path / "first.png", steps=60, end=10.0)
    assert first["stopped"] == "diverged" and first["steps"] < 60      # 10 blows any network up
    assert first["valley"][0] <= first["suggestion"] <= first["valley"][1]
    assert not (tmp_path / "run").exists()                           # no run folder made
    img = np.asarray(Image.open(tmp_path / "first.png").convert("RGB"))
    assert img.shape[:2] == (420, 750) and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    # a run exists now: lr-find neither reads it nor touches it
    train(cfg, reporter=QuietReporter())
    before = _snapshot(tmp_path / "run")
    again = lr_find(cfg, out=tmp_path / "again.png", steps=60, end=10.0)
    assert _snapshot(tmp_path / "run") == before
    assert again["losses"] == first["losses"] and again["suggestion"] == first["suggestion"]
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == ["again.png", "cache", "data", "first.png", "run", "run.yaml"]
    # train.init: the sweep starts where training would, from those weights, not from fresh ones
    warm = lr_find(cfg, ["train.init=run/best.npz"], out=tmp_path / "warm.png", steps=20, end=1e-3)
    assert warm["init"] == str(tmp_path / "run" / "best.npz") and warm["notes"] == []       # same classes: no head reinitialised
    assert warm["losses"][0] < first["losses"][0]
    assert _snapshot(tmp_path / "run") == before


def test_lr_find_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(app, ["lr-find", str(cfg), "--steps", "30"])
    assert res.exit_code == 0, res.output
    assert "suggested learning rate: " in res.stdout and "--set train.lr=" in res.stdout
    assert (tmp_path / "lr_find.png").exists()
    res = CliRunner().invoke(app, ["lr-find", str(cfg), "--steps", "30", "--json", "--out", "sweep.png"])
    result = json.loads(res.stdout)
    assert len(result["lrs"]) == len(result["losses"]) == result["steps"] and (tmp_path / "sweep.png").exists()
    for args, message in ((["--start-lr", "1", "--end-lr", "0.1"], "the sweep needs 0 < --start-lr < --end-lr"),
                          (["--steps", "2"], "--steps must be at least 5")):
        res = CliRunner().invoke(app, ["lr-find", str(cfg), *args])
        assert res.exit_code == 2 and res.stderr.startswith(f"error: {message}") and res.stderr.count("\n") == 1
