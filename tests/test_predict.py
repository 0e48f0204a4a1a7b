"""predict and evaluate from a checkpoint alone; every bad checkpoint is one clean line."""

import io
import json
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.model import checkpoint
from cnncli.model.checkpoint import CheckpointError
from cnncli.cli.app import app
from cnncli.commands.evaluate import evaluate
from cnncli.commands.predict import load, predict

ARCH = {"input": [2, 2, 1], "layers": [
    "flatten", {"dense": {"units": 2, "activation": "softmax"}}]}


def threshold_checkpoint(path):
    """A hand-made 2-class model: 'bright' when the mean pixel / 255 exceeds 0.5.
    x = pixel / 255 (mean 0, std 1); logit_bright - logit_dark = 10 * (sum x - 2)."""
    w = np.array([[-5.0] * 4, [5.0] * 4], np.float32)
    b = np.array([10.0, -10.0], np.float32)
    checkpoint.save(path, {"layers.1.weight": w, "layers.1.bias": b}, {
        "architecture": ARCH, "classes": ["dark", "bright"], "epoch": 0,
        "preprocessing": {"input": [2, 2, 1], "mean": [0.0], "std": [1.0], "resize": "stretch"}})
    return path


def gray(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (2, 2), int(round(value * 255))).save(path)
    return path


@pytest.fixture
def fixture(tmp_path):
    ckpt = threshold_checkpoint(tmp_path / "model.npz")
    data = tmp_path / "data"
    for i, v in enumerate([0.1, 0.1, 0.2, 0.9]):     # one dark image is bright -> misread
        gray(data / "dark" / f"d{i}.png", v)
    for i, v in enumerate([0.8, 0.8, 0.3]):          # one bright image is dark -> misread
        gray(data / "bright" / f"b{i}.png", v)
    return ckpt, data


def test_evaluate_matches_hand_counts(fixture, tmp_path):
    ckpt, data = fixture
    rep = evaluate(ckpt, data, cache_dir=tmp_path / "cache")
    assert rep["images"] == 7
    assert rep["confusion"] == [[3, 1], [1, 2]]           # rows: true dark, true bright
    assert rep["accuracy"] == pytest.approx(5 / 7)
    dark, bright = rep["per_class"]
    assert (dark["precision"], dark["recall"], dark["support"]) == (pytest.approx(3 / 4), pytest.approx(3 / 4), 4)
    assert (bright["precision"], bright["recall"], bright["support"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 3)
    assert bright["f1"] == pytest.approx(2 / 3) and rep["top_k_accuracy"] == 1.0
    # loss = mean of -log p(true class), by hand from the logits
    xs = {"d": [0.1, 0.1, 0.2, 0.9], "b": [0.8, 0.8, 0.3]}
    pb = lambda v: 1 / (1 + np.exp(-10 * (4 * round(v * 255) / 255 - 2)))  # noqa: E731
    nll = [-np.log(1 - pb(v)) for v in xs["d"]] + [-np.log(pb(v)) for v in xs["b"]]
    assert rep["loss"] == pytest.approx(np.mean(nll), rel=1e-4)


def test_evaluate_class_rules(fixture, tmp_path):
    ckpt, data = fixture
    (data / "bright").rename(data / "zebra")
    with pytest.raises(Exception, match="'zebra' is not one of the model's classes"):
        evaluate(ckpt, data, cache_dir=tmp_path / "c")
    (data / "zebra").rename(data / "bright")
    for f in (data / "bright").iterdir():
        f.unlink()
    rep = evaluate(ckpt, data, cache_dir=tmp_path / "c")     # a class with no images is fine
    assert rep["per_class"][1]["support"] == 0 and rep["images"] == 4


def test_predict_equals_model_on_preprocessed_arrays(tmp_path):
    from .test_train import write_config
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train
    from cnncli.data.decode import load_image

    res = train(write_config(tmp_path, epochs=1), reporter=QuietReporter())
    files = sorted((tmp_path / "data" / "b").glob("*.png"))[:4]
    out = predict(res.output / "best.npz", [str(f) for f in files], top_k=3)
    loaded = load(res.output / "best.npz")
    x = np.stack([load_image(f, 12, 12, 3) for f in files]).astype(np.float64) / 255.0
    x = ((x - loaded.mean) / loaded.std).astype(np.float32)
    t = loaded.meta["calibration"]["temperature"]      # training fitted it on its validation images
    assert t != 1.0 and loaded.model.head == "softmax"
    z = loaded.model.forward(x).astype(np.float64) / t
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)                  # softmax(z / T)
    for r, p in zip(out, probs):
        got = {t["class"]: t["prob"] for t in r["top"]}
        assert got == pytest.approx({c: float(v) for c, v in zip(loaded.classes, p)}, rel=1e-5)
        assert [t["prob"] for t in r["top"]] == sorted(got.values(), reverse=True)


def test_predict_paths_folders_globs_and_errors(fixture, tmp_path):
    ckpt, data = fixture
    (data / "dark" / "broken.png").write_bytes(b"junk")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(ckpt), str(data / "dark"), str(data / "bright" / "b*.png"),
                              str(tmp_path / "missing.png"), "--json", "-k", "5"])
    assert res.exit_code == 1
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    ok = [r for r in lines if "top" in r]
    bad = [r for r in lines if "error" in r]
    assert len(ok) == 7 and len(bad) == 2 and all(len(r["top"]) == 2 for r in ok)   # top-k capped at 2
    assert {r["path"].rsplit("/", 1)[-1]: r["top"][0]["class"] for r in ok}["d3.png"] == "bright"
    csv = runner.invoke(app, ["predict", str(ckpt), str(data / "bright"), "--csv"])
    assert csv.exit_code == 0 and csv.stdout.splitlines()[0] == "path,class_1,prob_1,class_2,prob_2,error"


def _corrupt(tmp_path, fixture_ckpt, how):
    src = fixture_ckpt.read_bytes()
    bad = tmp_path / f"{how}.npz"
    if how == "truncated":
        bad.write_bytes(src[: len(src) // 2])
    elif how == "bit_flipped":
        b = bytearray(src)
        b[len(b) // 3] ^= 0x40
        bad.write_bytes(bytes(b))
    elif how == "not_npz":
        bad.write_text("hello")
    elif how == "empty":
        bad.write_bytes(b"")
    else:
        arrays, meta = checkpoint.load(fixture_ckpt)
        meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "cnncli_version")}
        if how == "missing_array":
            del arrays["layers.1.bias"]
        elif how == "wrong_shape":
            arrays["layers.1.weight"] = np.zeros((3, 4), np.float32)
        elif how == "nan_weights":
            arrays["layers.1.weight"] = np.full((2, 4), np.nan, np.float32)
        elif how == "newer_format":
            checkpoint.FORMAT_VERSION, old = 99, checkpoint.FORMAT_VERSION
            try:
                checkpoint.save(bad, arrays, meta)
            finally:
                checkpoint.FORMAT_VERSION = old
            return bad
        elif how == "object_array":
            with open(bad, "wb") as f:
                np.savez(f, meta=np.array(json.dumps({"format": "cnncli-checkpoint"})),
                         evil=np.array([{"a": 1}], dtype=object))
            return bad
        elif how == "meta_not_json":
            with open(bad, "wb") as f:
                np.savez(f, meta=np.array("{not json"), **arrays)
            return bad
        elif how in ("classes_not_list", "architecture_not_dict", "input_2d", "nan_mean"):
            meta = dict(meta)
            if how == "classes_not_list":
                meta["classes"] = 5
            elif how == "architecture_not_dict":
                meta["architecture"] = 5
            elif how == "nan_mean":
                meta["preprocessing"] = {**meta["preprocessing"], "mean": [float("nan")]}
            else:
                meta["preprocessing"] = {**meta["preprocessing"], "input": [28, 28]}
        elif how == "huge_shape":
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                       "shape": (100000, 100000, 100)})
            with zipfile.ZipFile(bad, "w") as z:
                z.writestr("meta.npy", _npy(np.array(json.dumps({"format": "cnncli-checkpoint"}))))
                z.writestr("layers.1.weight.npy", b"\x93NUMPY" + struct.pack("<BB", 1, 0) + buf.getvalue()[8:])
            return bad
        checkpoint.save(bad, arrays, meta)
    return bad


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


BAD = ["truncated", "bit_flipped", "not_npz", "empty", "missing_array", "wrong_shape", "nan_weights",
       "newer_format", "object_array", "meta_not_json", "huge_shape", "classes_not_list",
       "architecture_not_dict", "input_2d", "nan_mean"]
MESSAGES = {"nan_mean": "finite number", "not_npz": "not a checkpoint", "empty": "this one is empty", "missing_array": "'layers.1.bias' is missing", "wrong_shape": "has shape (3, 4)",
            "newer_format": "newer than this cnncli", "object_array": "pickle", "meta_not_json": "not valid JSON",
            "huge_shape": "refused", "nan_weights": "NaN"}


@pytest.mark.parametrize("how", BAD)
def test_bad_checkpoints_get_one_clean_line(fixture, tmp_path, how):
    bad = _corrupt(tmp_path, fixture[0], how)
    with pytest.raises(CheckpointError) as info:
        load(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    assert MESSAGES.get(how, "") in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "cnncli", "predict", str(bad), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_inspect_checkpoint_shows_classes_and_epoch(fixture):
    res = CliRunner().invoke(app, ["inspect", str(fixture[0])])
    assert res.exit_code == 0, res.output
    assert "dark, bright" in res.output and "epoch" in res.output
    js = json.loads(CliRunner().invoke(app, ["inspect", "--json", str(fixture[0])]).stdout)
    assert js["total_params"] == 10 and js["checkpoint"]["classes"] == ["dark", "bright"]


def test_predict_on_a_folder_without_images_says_so(fixture, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    out = predict(fixture[0], [str(empty)])
    assert out == [{"path": str(empty), "error": out[0]["error"]}] and "no images in this folder" in out[0]["error"]


def test_tta_averages_the_views_through_the_one_evaluation(tmp_path):
    from .test_train import write_config
    from cnncli.data.decode import load_image
    from cnncli.kernels.augment import prepare_batch
    from cnncli.commands.predict import _scores, tta_views
    from cnncli.engine.progress import QuietReporter
    from cnncli.commands.train import train

    res = train(write_config(tmp_path, epochs=1), reporter=QuietReporter())   # trained with augment.flip
    loaded = load(res.output / "best.npz")
    files = sorted((tmp_path / "data").glob("*/*.png"))[::5]
    images = np.stack([load_image(f, 12, 12, 3) for f in files])
    labels = np.array([["a", "b", "c"].index(f.parent.name) for f in files])
    views = tta_views(loaded)
    assert views == [(False, 0, 0), (True, 0, 0), (False, 1, 0), (False, -1, 0), (False, 0, 1), (False, 0, -1)]
    n = len(images)
    each = [loaded.model.predict_proba(prepare_batch(images, loaded.mean, loaded.std, np.full(n, f),
                                                     np.full(n, dy), np.full(n, dx))) for f, dy, dx in views]
    want = np.mean(each, axis=0)
    probs, loss = _scores(loaded, images, labels, batch_size=4, tta=True)
    np.testing.assert_allclose(probs, want, rtol=1e-5)
    assert loss == pytest.approx(-np.log(want[np.arange(n), labels]).mean(), rel=1e-5)
    plain, _ = _scores(loaded, images, labels)               # off by default: the original alone
    np.testing.assert_allclose(plain, each[0], rtol=1e-6)
    loaded.meta["config"]["data"]["augment"]["flip"] = False  # a model never shown mirror images...
    assert (True, 0, 0) not in tta_views(loaded)             # ...is not asked about them
    out = CliRunner().invoke(app, ["evaluate", str(res.output / "best.npz"), str(tmp_path / "data"), "--tta"],
                             env={"CNNCLI_CACHE": str(tmp_path / "cache")})
    assert out.exit_code == 0 and "6 views averaged: original, mirror, shift (+1, +0)" in out.output
    out = CliRunner().invoke(app, ["predict", str(res.output / "best.npz"), str(files[0]), "--tta", "--json"])
    got = json.loads(out.output)["top"]
    fresh = load(res.output / "best.npz")                   # flip on again, as the checkpoint says
    calibrated, _ = _scores(fresh, images[:1], tta=True, temperature=fresh.meta["calibration"]["temperature"])
    assert {t["class"]: t["prob"] for t in got} == pytest.approx(dict(zip(loaded.classes, calibrated[0].tolist())),
                                                                 rel=1e-5)
