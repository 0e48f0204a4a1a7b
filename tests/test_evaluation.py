"""evaluate --out: confusion.csv, per_class.csv, confusion.png and mistakes.png, checked by content."""

import csv
import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.evaluate import evaluate
from cnncli.viz.grids import most_confident_mistakes


def picture(path_or_bytes):
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(src).convert("RGB")).astype(int)


def n_colours(img):
    return len(np.unique(img.reshape(-1, 3), axis=0))


def test_most_confident_mistakes_come_first():
    labels = np.array([0, 1, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.95, 0.05]])
    assert most_confident_mistakes(labels, probs).tolist() == [4, 1, 3]     # 95%, 80%, 70% wrong
    assert most_confident_mistakes(labels, probs, limit=2).tolist() == [4, 1]


def test_evaluate_out_writes_the_four_files(shapes_run, tmp_path):
    run, data, _ = shapes_run
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["evaluate", str(run / "best.npz"), str(data / "val"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote confusion.csv, per_class.csv, confusion.png, mistakes.png, reliability.png to {out}" in res.stdout
    rep = evaluate(run / "best.npz", data / "val")
    with open(out / "confusion.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true \\ predicted"] + rep["classes"]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == rep["confusion"]
    with open(out / "per_class.csv", newline="") as f:
        per = list(csv.DictReader(f))
    assert [p["class"] for p in per] == rep["classes"]
    for p, q in zip(per, rep["per_class"]):
        assert float(p["f1"]) == pytest.approx(q["f1"], abs=1e-6) and int(p["support"]) == q["support"] == 50
    conf = picture(out / "confusion.png")
    assert conf.shape[1] > 2 * conf.shape[0] * 0.8 and n_colours(conf) > 50
    assert (np.abs(conf - [8, 48, 107]).sum(axis=-1) < 60).sum() > 500      # dark blue diagonal cells
    wrong = int((np.array(rep["confusion"]).sum() - np.trace(rep["confusion"])))
    mistakes = picture(out / "mistakes.png")
    assert 0 < wrong and n_colours(mistakes) > 200 and mistakes.shape[1] >= 300
    # --json keeps stdout pure JSON
    res = CliRunner().invoke(app, ["evaluate", str(run / "best.npz"), str(data / "val"), "--json", "--out", str(out)])
    assert res.exit_code == 0 and res.stdout.lstrip().startswith("{") and "wrote" in res.stderr


def test_no_mistakes_is_said_not_drawn_empty():
    from cnncli.viz.figure import png_bytes
    from cnncli.viz.grids import draw_mistakes

    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    img = picture(png_bytes(draw_mistakes(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]), probs, ["a", "b"])))
    assert img.shape == (120, 600, 3) and (img.sum(axis=-1) < 200).sum() > 100   # the words, readable
