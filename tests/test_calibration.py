"""Calibration (temperature, ECE, NLL) and "none of these" (predict --reject, evaluate --unknown),
checked against hand-computed values."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.calibrate import calibrate, write
from cnncli.commands.evaluate import evaluate
from cnncli.commands.predict import _scores, load, predict
from cnncli.commands.unknown import scores
from cnncli.engine import calibration as cal
from cnncli.model import checkpoint

from .test_predict import fixture, gray  # noqa: F401  (the hand-made dark / bright model)


# --- the math, by hand ---
def test_temperature_of_a_hand_checkable_case():
    """Four images with logits (2, 0), three of them class 0: the best p(class 0) is 3/4, so
    softmax(2 / T) = 3/4, i.e. 2 / T = ln 3 and T = 2 / ln 3. The same for a one-logit sigmoid head."""
    logits, labels = np.array([[2.0, 0.0]] * 4), np.array([0, 0, 0, 1])
    assert cal.fit_temperature(logits, labels, "softmax") == pytest.approx(2 / math.log(3), rel=1e-6)
    assert cal.fit_temperature(np.array([[2.0]] * 4), np.array([1, 1, 1, 0]), "sigmoid") == \
        pytest.approx(2 / math.log(3), rel=1e-6)
    t = 2 / math.log(3)
    assert cal.nll(logits, labels, "softmax", t) == pytest.approx(-(3 * math.log(0.75) + math.log(0.25)) / 4)
    assert cal.nll(logits, labels, "softmax") == pytest.approx(
        -(3 * math.log(1 / (1 + math.exp(-2))) + math.log(1 / (1 + math.exp(2)))) / 4)


def test_temperature_is_the_minimum_of_a_fine_grid():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (200, 5))
    labels = np.where(rng.random(200) < 0.6, logits.argmax(axis=1), rng.integers(0, 5, 200))
    t = cal.fit_temperature(logits, labels, "softmax")
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 4001))
    best = grid[np.argmin([cal.nll(logits, labels, "softmax", g) for g in grid])]
    assert t == pytest.approx(best, rel=2e-3) and t > 1          # over-confident logits: T > 1


def test_ece_of_a_small_case_by_hand():
    """Confidences 0.9 (right), 0.9 (wrong), 0.62 (right), 0.7 (right), in bins 13, 13, 9 and 10 of 15:
    ECE = 2/4 |0.5 - 0.9| + 1/4 |1 - 0.62| + 1/4 |1 - 0.7| = 0.2 + 0.095 + 0.075 = 0.37."""
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.62, 0.38], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    e, bins = cal.reliability(probs, labels)
    assert e == pytest.approx(0.37)
    assert len(bins) == 15 and [b["count"] for b in bins] == [0] * 9 + [1, 1, 0, 0, 2, 0]
    assert bins[13]["accuracy"] == 0.5 and bins[13]["confidence"] == pytest.approx(0.9)
    assert bins[9]["lo"] == pytest.approx(9 / 15) and bins[9]["hi"] == pytest.approx(10 / 15)
    assert cal.ece(np.array([[1.0, 0.0], [1 / 15, 14 / 15]]), np.array([0, 0])) == pytest.approx(0.5 * 14 / 15)


def test_auroc_and_threshold_by_hand():
    # pairs known > unknown: (3,0) (3,2) (2,0) (1,0), (2,2) a tie counts half, (1,2) none: 4.5 / 6
    assert cal.auroc([3, 2, 1], [0, 2]) == pytest.approx(0.75)
    assert cal.auroc([5, 6], [1, 2]) == 1.0 and cal.auroc([1], [1]) == 0.5
    scores = np.arange(100.0)
    t = cal.threshold_for(scores, 0.05)
    assert int((scores < t).sum()) == 5 and cal.threshold_for(scores, 0.0) == 0.0


def test_held_out_distance_equals_centres_recomputed_without_each_image():
    rng = np.random.default_rng(1)
    feats, labels = rng.normal(size=(30, 4)), np.repeat([0, 1, 2], 10)
    fit = cal.fit_centres(feats, labels, 3)
    got = cal.held_out_distance_score(feats, labels, fit)
    g = (feats - fit["shift"]) / fit["scale"]
    for i in range(30):
        centres = fit["centres"].copy()
        others = (labels == labels[i]) & (np.arange(30) != i)
        centres[labels[i]] = g[others].mean(axis=0)
        want = -np.sqrt(((g[i] - centres) ** 2).sum(axis=1).min() / 4)
        assert got[i] == pytest.approx(want, rel=1e-9)
    # a class without validation images has no centre: nothing is near it
    none = cal.fit_centres(feats[10:], labels[10:], 3)
    assert np.isnan(none["centres"][0]).all()
    np.testing.assert_allclose(cal.distance_score(feats, none), cal.distance_score(feats, none, exclude=0))
    # the class-out score: with class 0's centre gone its images are farther than with it
    assert np.all(cal.distance_score(feats, fit, exclude=0)[:10] <= cal.distance_score(feats, fit)[:10])
    z = np.log([[0.5, 0.3, 0.2]])        # the log-odds of the max-probability: 0.5 / 0.5; without class 0, 0.6 / 0.4
    assert cal.probability_score(z, "softmax")[0] == pytest.approx(0.0, abs=1e-12)
    assert cal.probability_score(z, "softmax", exclude=0)[0] == pytest.approx(math.log(0.6 / 0.4))
    assert cal.probability_score(z, "softmax", 2.0)[0] == pytest.approx(
        math.log(math.sqrt(0.5) / (math.sqrt(0.3) + math.sqrt(0.2))))            # softmax(z / 2)
    far = np.array([[60.0, 0.0], [50.0, 0.0]])   # p_max rounds to 1 in float64; the log-odds keep the order
    assert cal.probability_score(far, "softmax").tolist() == pytest.approx([60.0, 50.0])
    assert cal.probability_score(np.array([[3.0]]), "sigmoid")[0] == pytest.approx(3.0)
    assert cal.log_odds(0.75) == pytest.approx(math.log(3))


# --- the commands, on the hand-made dark / bright model (logit_bright - logit_dark = 10 (sum x - 2)) ---
def hand_logits(values):
    z = 10 * (4 * np.round(np.asarray(values) * 255) / 255 - 2)
    return np.stack([np.zeros_like(z), z], axis=1)


def test_calibrate_writes_the_temperature_predict_and_evaluate_use(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    before = checkpoint.load(ckpt)[0]
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(data)])
    assert res.exit_code == 0, res.output
    assert res.output.count("\n") == 1 and f"calibrated {ckpt} on 7 images of {data}: temperature" in res.output
    values, labels = [0.1, 0.1, 0.2, 0.9, 0.8, 0.8, 0.3], np.array([0, 0, 0, 0, 1, 1, 1])
    t = cal.fit_temperature(hand_logits(values), labels, "softmax")
    arrays, meta = checkpoint.load(ckpt)
    assert meta["calibration"]["temperature"] == pytest.approx(t, rel=1e-6) and t > 3   # two confident mistakes
    for k, v in before.items():                       # the weights are untouched
        np.testing.assert_array_equal(arrays[k], v)
    p_bright = 1 / (1 + np.exp(-hand_logits([0.3])[0, 1] / t))
    out = predict(ckpt, [str(data / "bright" / "b2.png")], top_k=2)[0]["top"]
    assert {o["class"]: o["prob"] for o in out}["bright"] == pytest.approx(p_bright, rel=1e-5)
    rep = evaluate(ckpt, data, cache_dir=tmp_path / "cache")
    probs = np.exp(cal.log_probs(hand_logits(values), "softmax", t))
    assert rep["ece"] == pytest.approx(cal.ece(probs, labels), abs=1e-6)
    assert rep["calibration"]["ece"][0] == pytest.approx(cal.ece(np.exp(cal.log_probs(hand_logits(values), "softmax")),
                                                                 labels), abs=1e-6)
    assert rep["nll"] == pytest.approx(cal.nll(hand_logits(values), labels, "softmax", t), rel=1e-5)
    assert rep["loss"] == pytest.approx(cal.nll(hand_logits(values), labels, "softmax"), rel=1e-5)  # = val_loss


def test_calibrate_refuses_test_images_and_bad_input(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    test = tmp_path / "test"
    data.rename(test)
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(test)])
    assert res.exit_code == 2 and "test images must stay unseen" in res.output and res.output.count("\n") == 1
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(test), "--split", "nope"])
    assert res.exit_code == 2 and "--split must be" in res.output
    arrays, meta = checkpoint.load(ckpt)
    checkpoint.save(ckpt, arrays, {**meta, "calibration": {"temperature": -1}})
    res = CliRunner().invoke(app, ["predict", str(ckpt), str(test)])
    assert res.exit_code == 2 and "meta.calibration.temperature must be a positive number" in res.output


def split_file(path, data, splits):
    """A label file of the fixture's 7 images, splits in the order d0..d3, b0..b2."""
    files = sorted((data / "dark").glob("*.png")) + sorted((data / "bright").glob("*.png"))
    rows = [f"{f.relative_to(path.parent).as_posix()},{f.parent.name},{s}" for f, s in zip(files, splits)]
    path.write_text("path,label,split\n" + "\n".join(rows) + "\n")
    return path


def test_calibrate_takes_a_label_files_val_rows_without_split(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    labels = split_file(tmp_path / "labels.csv", data, ["train", "train", "val", "test", "train", "train", "val"])
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(labels)])
    assert res.exit_code == 0, res.output
    assert f"on 2 images of {labels} (split val, as no --split was given): temperature" in res.output
    t = cal.fit_temperature(hand_logits([0.2, 0.3]), np.array([0, 1]), "softmax")   # d2, b2: the val rows
    assert checkpoint.load(ckpt)[1]["calibration"]["temperature"] == pytest.approx(t, rel=1e-6)
    split_file(labels, data, ["train", "train", "test", "test", "train", "train", "test"])
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(labels)])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert f"{labels} has no val rows (its split column holds test, train): calibrate on validation" in res.output


def test_calibrating_on_training_images_is_warned(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    warning = "holds training images: the network has fitted them, so calibrating on them makes its confidence too high"
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(data)])
    assert res.exit_code == 0 and warning not in res.output
    labels = split_file(tmp_path / "labels.csv", data, ["train", "train", "val", "val", "train", "train", "val"])
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(labels), "--split", "train"])
    assert res.exit_code == 0 and f"warning: {labels} --split train {warning}" in res.output
    assert "on 4 images of" in res.output
    data.rename(tmp_path / "train")
    res = CliRunner().invoke(app, ["calibrate", str(ckpt), str(tmp_path / "train")])
    assert res.exit_code == 0 and f"warning: {tmp_path / 'train'} {warning}" in res.output


def test_predict_reject(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    files = [str(data / "dark" / "d0.png"), str(data / "bright" / "b2.png")]   # p(dark) 1.0; p(dark) 0.9997
    out = predict(ckpt, files, reject=0.9999)
    assert [r["decision"] for r in out] == ["dark", "unknown"]
    res = CliRunner().invoke(app, ["predict", str(ckpt), *files, "--reject", "0.9999", "--csv"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].endswith(",error,decision")
    assert res.stdout.splitlines()[2].endswith(",unknown")
    res = CliRunner().invoke(app, ["predict", str(ckpt), *files, "--reject", "auto"])
    assert res.exit_code == 2 and "no calibration" in res.output and "cnncli calibrate" in res.output
    for bad in ("1.5", "often"):
        res = CliRunner().invoke(app, ["predict", str(ckpt), *files, "--reject", bad])
        assert res.exit_code == 2 and f"--reject {bad}: give auto" in res.output
    # auto: the threshold rejecting 30% of the 7 calibration images' scores (2 of them, the lowest)
    calibrate(ckpt, data, cache_dir=tmp_path / "cache")
    meta, arrays = checkpoint.calibration(ckpt)
    name = meta["unknown_score"]
    s = arrays[name]
    assert len(s) == 7 and np.all(np.diff(s) >= 0)
    t = (s[1] + s[2]) / 2
    loaded = load(ckpt)
    images = np.stack([np.asarray(Image.open(f).convert("L"))[..., None] for f in files])
    probs, _ = _scores(loaded, images, temperature=meta["temperature"])
    mine = scores(loaded, images, arrays, meta["temperature"])[name]
    want = ["unknown" if v < t else loaded.classes[int(np.argmax(p))] for v, p in zip(mine, probs)]
    assert [r["decision"] for r in predict(ckpt, files, reject="auto", reject_rate=0.3)] == want


def test_reject_with_tta_judges_the_printed_probability(fixture, tmp_path):  # noqa: F811
    ckpt, data = fixture
    files = [str(gray(tmp_path / "x" / f"{v}.png", v)) for v in (0.45, 0.6)]
    # one view: p(dark) 0.877, p(bright) 0.982; TTA averages: p(dark) 0.959 and 0.672
    out = predict(ckpt, files, top_k=1, tta=True, reject=0.9)
    assert [r["top"][0]["prob"] >= 0.9 for r in out] == [True, False]
    assert [r["decision"] for r in out] == ["dark", "unknown"]
    calibrate(ckpt, data, cache_dir=tmp_path / "cache")
    arrays, meta = checkpoint.load(ckpt)
    checkpoint.save(ckpt, arrays, {**meta, "calibration": {**meta["calibration"], "unknown_score": "distance"}})
    res = CliRunner().invoke(app, ["predict", str(ckpt), *files, "--tta", "--reject", "auto"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "drop --tta" in res.output


def test_probability_score_of_printed_probabilities_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [1.0, 1e-9, 0.0], [0.25, 0.75, 0.0]], np.float32)
    want = [math.log(0.7 / 0.3), math.log(1 / 1e-9), math.log(3)]
    np.testing.assert_allclose(cal.probability_score_of(p), want, rtol=1e-6)


def test_training_calibrates_best_and_evaluate_scores_unknowns(tmp_path):
    from cnncli.commands.train import train
    from cnncli.engine.progress import QuietReporter

    from .imagegen import make_folder
    from .test_train import write_config

    res = train(write_config(tmp_path, epochs=2), reporter=QuietReporter())
    best = res.output / "best.npz"
    meta, arrays = checkpoint.calibration(best)
    assert meta["images"] == 9 and meta["data"].startswith("the images data.val_split held out of")
    assert meta["unknown_score"] in ("probability", "distance") and arrays["centres"].shape[0] == 3
    assert "calibration" not in checkpoint.load(res.output / "last.npz")[1]
    make_folder(tmp_path / "other", per_class=4, seed=5)
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["evaluate", str(best), str(tmp_path / "data"), "--unknown", str(tmp_path / "other"),
                                 "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert set(rep["unknown_auroc"]) == {"probability", "distance"} and rep["unknown"]["images"] == 12
    assert 0 <= rep["unknown"]["caught"] <= 1 and 0 <= rep["ece"] <= 1
    assert (out / "reliability.png").stat().st_size > 10_000
    text = CliRunner().invoke(app, ["evaluate", str(best), str(tmp_path / "data")]).output
    assert f"calibration: temperature {meta['temperature']:.3f} (fitted on the images" in text
    text = CliRunner().invoke(app, ["inspect", str(best)]).output
    assert f"calibration     temperature {meta['temperature']:.4g}, fitted on the images data.val_split" in text


def test_export_divides_by_the_temperature(fixture, tmp_path):  # noqa: F811
    pytest.importorskip("onnxruntime")
    from cnncli.export import check, export

    ckpt, data = fixture
    arrays, meta = checkpoint.load(ckpt)
    write(ckpt, {"temperature": 4.0}, {})
    info = export(ckpt, tmp_path / "m.onnx")
    assert "Div" in info.operators
    report = check(ckpt, tmp_path / "m.onnx", [str(data)])
    assert report.ok and report.images == 7
    import onnxruntime as ort
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.full((1, 1, 2, 2), 0.3, np.float32)
    p = sess.run(None, {"pixels": x})[0]
    assert p[0, 1] == pytest.approx(1 / (1 + math.exp(-10 * (4 * 0.3 - 2) / 4)), rel=1e-5)


def test_a_sigmoid_head_scales_its_one_logit(fixture, tmp_path):  # noqa: F811
    """The same dark / bright rule as one logit z = 10 (sum x - 2): p(bright) = sigmoid(z / T)."""
    pytest.importorskip("onnxruntime")
    from cnncli.export import check, export

    ckpt, data = fixture
    arch = {"input": [2, 2, 1], "layers": ["flatten", {"dense": {"units": 1, "activation": "sigmoid"}}]}
    checkpoint.save(ckpt, {"layers.1.weight": np.full((1, 4), 10.0, np.float32),
                           "layers.1.bias": np.array([-20.0], np.float32)},
                    {"architecture": arch, "classes": ["dark", "bright"], "epoch": 0,
                     "preprocessing": {"input": [2, 2, 1], "mean": [0.0], "std": [1.0], "resize": "stretch"}})
    meta = calibrate(ckpt, data, cache_dir=tmp_path / "cache")
    values, labels = [0.1, 0.1, 0.2, 0.9, 0.8, 0.8, 0.3], np.array([0, 0, 0, 0, 1, 1, 1])
    z = hand_logits(values)[:, 1:]
    t = cal.fit_temperature(z, labels, "sigmoid")
    assert meta["temperature"] == pytest.approx(t, rel=1e-6)
    assert t == pytest.approx(cal.fit_temperature(hand_logits(values), labels, "softmax"), rel=1e-6)  # same model
    out = predict(ckpt, [str(data / "bright" / "b2.png")], top_k=2)[0]["top"]
    assert {o["class"]: o["prob"] for o in out}["bright"] == pytest.approx(1 / (1 + np.exp(-z[6, 0] / t)), rel=1e-5)
    info = export(ckpt, tmp_path / "s.onnx")
    assert "Div" in info.operators and "Sigmoid" in info.operators
    assert check(ckpt, tmp_path / "s.onnx", [str(data)]).ok


def test_the_table_shows_decisions_only_with_reject(fixture):  # noqa: F811
    ckpt, data = fixture
    plain = CliRunner().invoke(app, ["predict", str(ckpt), str(data / "bright")])
    assert plain.exit_code == 0 and "┃ decision" not in plain.stdout and "bright 100.0%" in plain.stdout
    rejected = CliRunner().invoke(app, ["predict", str(ckpt), str(data / "bright"), "--reject", "0.9999"])
    assert rejected.exit_code == 0 and "┃ decision" in rejected.stdout and "│ unknown" in rejected.stdout


def test_a_temperature_at_the_search_bound_is_said():
    from cnncli.commands.calibrate import describe

    logits, labels = np.array([[3.0, 0.0], [0.0, 3.0]]), np.array([0, 1])     # no mistake: NLL falls as T -> 0
    assert cal.fit_temperature(logits, labels, "softmax") == pytest.approx(cal.T_RANGE[0], rel=1e-3)
    meta = {"images": 2, "data": "val", "temperature": cal.T_RANGE[0], "at_bound": "low", "nll": [0.1, 0.0],
            "ece": [0.1, 0.0], "unknown_score": "probability", "class_out_auroc": {"probability": 0.5, "distance": 0.5}}
    assert "lower bound: no validation mistake" in describe("best.npz", meta)


def test_explain_shows_the_calibrated_probability(shapes_run, tmp_path):
    from cnncli.commands.explain import explain

    run, data, _ = shapes_run
    best = run / "best.npz"
    image = sorted((data / "val" / "circle").glob("*.png"))[0]
    t = checkpoint.temperature(checkpoint.load(best)[1])
    shown = explain(best, [str(image)], tmp_path / "x", draw=False)[0]["prediction"]
    top = predict(best, [str(image)], top_k=1)[0]["top"][0]
    assert t != 1.0 and shown["class"] == top["class"] and shown["prob"] == pytest.approx(top["prob"], rel=1e-5)
