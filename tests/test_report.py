"""report.html: one self-contained file, checked by content, and (marked slow, run by .ci/run)
loaded in headless Chromium: no console error, the pictures rendered."""

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.engine.progress import QuietReporter
from cnncli.commands.report import build_report
from cnncli.commands.train import train

from .test_evaluation import n_colours, picture
from .test_train import write_config

IMG = re.compile(r'<img id="([a-z]+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def checkpoint_temperature(path):
    from cnncli.model import checkpoint
    return checkpoint.temperature(checkpoint.load(path)[1])


def test_report_is_one_self_contained_file(shapes_run):
    run, data, _ = shapes_run
    before = sorted(p.name for p in run.iterdir())
    res = CliRunner().invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    page = (run / "report.html").read_text()
    assert sorted(p.name for p in run.iterdir()) == sorted(before + ["report.html"])   # nothing else
    assert not re.search(r"(src|href)=\"(?!data:)", page) and "http://" not in page and "https://" not in page
    assert "<script" not in page
    images = dict(IMG.findall(page))
    assert set(images) == {"curves", "confusion", "reliability", "mistakes", "cams"}
    for name, data64 in images.items():
        img = picture(base64.b64decode(data64))
        assert img.shape[0] > 150 and n_colours(img) > 50, name
    for text in ("Final metrics", "Training curves", "Confusion matrix", "Per class", "Most confident mistakes",
                 "Layers", "Config", "64× 3×3×32, s1, same", "lr: 0.005", "(the run&#x27;s validation folder)"):
        assert text in page, text
    assert page.count("<tr>") >= 4 + 8 + 10          # per class, last epoch, layers
    assert "top-4 accuracy" not in page                # 4 classes: top-4 is 100% by definition
    t = checkpoint_temperature(run / "best.npz")       # training fitted it on the validation folder
    assert t != 1.0 and f"Temperature {t:.3f} (fitted on {data / 'val'})" in page


def test_report_of_a_run_with_a_validation_split(tmp_path, monkeypatch):
    """No validation folder: the report scores the images val_split held out, as training did."""
    monkeypatch.chdir(tmp_path)
    res = train(write_config(tmp_path), reporter=QuietReporter())
    path, _ = build_report(res.output)
    page = path.read_text()
    assert "the 9 images data.val_split 0.25 held out" in page
    best = res.state.best["epoch"]
    val_acc = res.state.history[best - 1]["val_acc"]        # best.npz on the same images, as training saw it
    assert f"<b>{val_acc:.1%}</b><span>accuracy of best.npz</span>" in page
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2 and res.stderr == f"error: {tmp_path / 'nope'}: no such run folder (give the output folder of `cnncli train`)\n"


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def browse(browser, tmp_path, url, *args):
    """Run headless Chromium on url -> (stdout, stderr); a fresh profile each time."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    out = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout, out.stderr


def console_errors(stderr):
    """Chromium's log lines for a page's console errors and failed loads."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
            or "net::ERR" in line]


@pytest.mark.slow
@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install chromium; .ci/run "
                    "installs it): the report was not opened in a browser")
def test_report_in_a_real_browser(shapes_run, tmp_path):
    browser = chromium()
    run, _, _ = shapes_run
    build_report(run)
    page = run / "report.html"
    # the check itself works: a page with a console error and a missing picture is caught
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    _, err = browse(browser, tmp_path, bad.as_uri(), "--dump-dom")
    assert any("boom" in line for line in console_errors(err)), err[-2000:]
    # the report: no console error, every picture decoded (a probe script added to a copy of the page)
    dom, err = browse(browser, tmp_path, page.as_uri(), "--dump-dom")
    assert not console_errors(err), console_errors(err)
    assert "Confusion matrix" in dom and 'id="curves"' in dom
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", "<script>document.title = Array.from(document.images)"
                                              ".map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken')"
                                              ".join(',');</script></body>"))
    dom, _ = browse(browser, tmp_path, probe.as_uri(), "--dump-dom")
    n = page.read_text().count("<img ")         # curves, confusion, mistakes, reliability, ...
    assert n >= 5 and re.search(f"<title>{','.join(['ok'] * n)}</title>", dom), re.search(r"<title>.*</title>", dom)
    # a screenshot: the curves and the confusion matrix are rendered, not blank
    shot = tmp_path / "shot.png"
    browse(browser, tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1280,2200")
    img = picture(shot)
    assert img.shape[:2] == (2200, 1280)
    blue = (np.abs(img - [0x1f, 0x77, 0xb4]).sum(axis=-1) < 40).sum()      # the training curve
    orange = (np.abs(img - [0xd9, 0x5f, 0x02]).sum(axis=-1) < 40).sum()    # the validation curve
    cells = (np.abs(img - [8, 48, 107]).sum(axis=-1) < 60).sum()           # the confusion matrix' diagonal
    assert blue > 300 and orange > 300 and cells > 2000, (blue, orange, cells)
    assert n_colours(img) > 1000


@pytest.mark.parametrize("classes,shown", [(6, True), (5, False)])
def test_the_top_k_card_shows_only_when_k_is_below_the_number_of_classes(classes, shown):
    """Top-5 accuracy means something with 6 classes; with 5 it is 100% by definition."""
    from pathlib import Path

    from cnncli.commands.report import _metrics
    from cnncli.viz import html

    rep = {"accuracy": 0.5, "loss": 1.0, "top_k": min(5, classes), "top_k_accuracy": 0.875,
           "classes": [str(i) for i in range(classes)], "images": 40}
    cards = _metrics(html, [], rep, Path("best.npz"), 3, "val")
    assert ("87.5%" in cards and "top-5 accuracy" in cards) == shown


@pytest.mark.parametrize("val_rows", [True, False])
def test_report_of_a_label_file_scores_the_images_training_validated_on(tmp_path, val_rows):
    """val rows: the report scores them, as training did; none: val_split held out of the train rows
    only, not of every row (test rows included)."""
    from .imagegen import make_folder
    from .test_labels import config, folder_rows, write_rows

    make_folder(tmp_path / "data" / "train", per_class=8)
    make_folder(tmp_path / "data" / "other", per_class=4, seed=1)
    rows = folder_rows(tmp_path / "data" / "train", "train") + folder_rows(tmp_path / "data" / "other",
                                                                          "val" if val_rows else "test")
    labels = write_rows(tmp_path / "data" / "labels.csv", rows)
    res = train(config(tmp_path, f"  train: {labels}\n  val_split: 0.25\n", epochs=2), reporter=QuietReporter())
    page = build_report(res.output)[0].read_text()
    best = res.state.best["epoch"]
    val_acc = res.state.history[best - 1]["val_acc"]
    assert f"<b>{val_acc:.1%}</b><span>accuracy of best.npz</span>" in page
    n = 12 if val_rows else 6         # 4 val rows a class, or 0.25 of 8 train rows a class (of all 12: 9)
    assert f"<b>{n}</b><span>images</span>" in page
    assert ("its val rows" in page) == val_rows and ("held out" in page) != val_rows
