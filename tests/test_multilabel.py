"""Multi-label classification: metrics against hand-computed values, the per-label BCE and its
gradient, label files read as multi-label (a|b cells, one-hot), training, evaluate, predict and
export through the CLI, and the one-line errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.engine.losses import Loss, balanced_pos_weights, multilabel_binary_cross_entropy
from cnncli.engine.mixed import Mixed, count_correct
from cnncli.engine.multilabel_metrics import average_precision, best_threshold, mean_ap, summarize
from cnncli.model import checkpoint

from .gradcheck import assert_grad_close
from .imagegen import blob_image


# --- metrics, hand-computed ---------------------------------------------------------------

def test_average_precision_counts_tied_scores_together():
    # sorted: 0.9 (+), then 0.8 (+) and 0.8 (-) tied, then 0.3 (-)
    # cut after 0.9: P 1, R 1/2; after the tie: P 2/3, R 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # (taking the tied positive first, one at a time, would give 1.0)
    assert average_precision([0.9, 0.8, 0.8, 0.3], [1, 1, 0, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.9, 0.8, 0.8, 0.3], [1, 0, 1, 0]) == pytest.approx(5 / 6)


def test_average_precision_of_simple_rankings():
    assert average_precision([0.1, 0.9, 0.5], [0, 1, 0]) == pytest.approx(1.0)
    # 0.9 (-), 0.5 (+): one cut at P 1/2, R 1
    assert average_precision([0.9, 0.5], [0, 1]) == pytest.approx(0.5)
    # every score equal: one cut, P = positives / N
    assert average_precision([0.1, 0.1, 0.1, 0.1], [1, 0, 0, 0]) == pytest.approx(0.25)
    assert average_precision([0.3, 0.2], [0, 0]) is None


def test_a_label_without_positives_is_left_out_of_map():
    scores = np.array([[0.9, 0.4], [0.2, 0.6], [0.7, 0.1]])
    targets = np.array([[1, 0], [0, 0], [0, 0]])
    m, left_out = mean_ap(scores, targets)
    assert m == pytest.approx(1.0) and left_out == [1]
    rep = summarize(scores, targets, ["a", "b"])
    assert rep["no_positive"] == ["b"] and rep["map_labels"] == 1
    assert rep["per_label"][1]["ap"] is None and rep["per_label"][1]["support"] == 0


def test_summary_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.8, 0.4]])
    rep = summarize(scores, targets, ["a", "b"])          # 0.5: predicted [[1, 0], [1, 1], [1, 0]]
    assert rep["exact_match"] == pytest.approx(1 / 3)      # only image 0 has both labels right
    assert rep["hamming_accuracy"] == pytest.approx(4 / 6)
    a, b = rep["per_label"]
    assert (a["precision"], a["recall"], a["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))
    assert (b["precision"], b["recall"], b["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    # label b's scores 0.7 (+), 0.4 (+), 0.2 (-): AP 1; a: 0.9 (+), 0.8 (+), 0.6 (-): AP 1
    assert rep["map"] == pytest.approx(1.0)
    rep = summarize(scores, targets, ["a", "b"], thresholds=[0.85, 0.3])   # [[1,0],[0,1],[0,1]]
    assert rep["exact_match"] == pytest.approx(2 / 3)
    assert rep["per_label"][0]["recall"] == pytest.approx(0.5)


def test_all_negative_predictions_score_zero_not_nan():
    targets = np.array([[1, 0], [0, 0], [0, 1]])
    rep = summarize(np.full((3, 2), 0.1), targets, ["a", "b"])
    assert all(c["precision"] == 0 and c["recall"] == 0 and c["f1"] == 0 for c in rep["per_label"])
    assert rep["exact_match"] == pytest.approx(1 / 3)       # image 1 has no label, none predicted
    assert rep["hamming_accuracy"] == pytest.approx(4 / 6)
    assert rep["map"] == pytest.approx(1 / 3)               # every score tied: P = 1/3 at R = 1, each label


def test_threshold_maximises_f1_between_two_scores():
    # cuts: 0.9 F1 2/3; 0.7 F1 1/2; 0.4 F1 4/5; 0.2 F1 2/3 -> halfway between 0.4 and 0.2
    assert best_threshold([0.9, 0.7, 0.4, 0.2], [1, 0, 1, 0]) == pytest.approx(0.3)
    assert best_threshold([0.9, 0.2], [1, 0]) == pytest.approx(0.55)
    assert best_threshold([0.9, 0.2], [1, 1]) == pytest.approx(0.1)     # keep all: below the lowest
    assert best_threshold([0.9, 0.2], [0, 0]) == 0.5                     # no positive: the default


# --- the loss -----------------------------------------------------------------------------

def test_multilabel_bce_by_hand_and_pos_weight():
    # z = 0: p = 1/2; t = 1, c = 2: (1 + 1) log 2; t = 0: log 2 -> mean (3 log 2) / 2
    loss, grad, p = multilabel_binary_cross_entropy(np.zeros((1, 2)), np.array([[1.0, 0.0]]), [2.0, 2.0])
    assert loss == pytest.approx(1.5 * np.log(2))
    # dL/dz = ((1 + (c - 1) t) p - c t) / (N K): (2 * 0.5 - 2) / 2 = -0.5, (0.5 - 0) / 2 = 0.25
    np.testing.assert_allclose(grad, [[-0.5, 0.25]])
    np.testing.assert_allclose(p, [[0.5, 0.5]])


@pytest.mark.parametrize("pos_weight", [None, [1.0, 3.0, 0.5]])
def test_multilabel_bce_gradient(rng, pos_weight):
    z = rng.standard_normal((4, 3)) * 3
    t = rng.integers(0, 2, (4, 3)).astype(np.float64)
    _, grad, _ = multilabel_binary_cross_entropy(z, t, pos_weight)
    assert_grad_close(lambda: multilabel_binary_cross_entropy(z, t, pos_weight)[0], z, grad, rng)


def test_loss_smoothing_mixing_and_extreme_logits():
    loss = Loss("multilabel", smoothing=0.2)
    z = np.array([[1000.0, -1000.0]], np.float32)
    value, grad, _ = loss(z, np.array([[1.0, 0.0]]))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # smoothed targets 0.9 / 0.1 against p = 1 / 0: grad (p - t) / 2
    np.testing.assert_allclose(grad, [[0.05, -0.05]], atol=1e-6)
    mixed = Mixed(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), np.array([0.75], np.float32))
    _, grad, _ = Loss("multilabel")(np.zeros((1, 2), np.float32), mixed)   # t = [0.75, 0.25]
    np.testing.assert_allclose(grad, [[(0.5 - 0.75) / 2, (0.5 - 0.25) / 2]], atol=1e-6)
    assert count_correct(np.array([[0.9, 0.2], [0.9, 0.9]]), np.array([[1, 0], [1, 0]])) == 1


def test_auto_pos_weight_is_negatives_over_positives():
    assert balanced_pos_weights([1, 3, 0], 4) == [3.0, 1 / 3, 1.0]


# --- label files and the CLI --------------------------------------------------------------

def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def mosaic(rng, labels, size=12):
    """A picture holding the blob pattern of each of its labels (0..3), one per quadrant."""
    a = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    q = size // 2
    for k in labels:
        r, c = divmod(k, 2)
        a[r * q:(r + 1) * q, c * q:(c + 1) * q] = np.asarray(blob_image(rng, k, size))[r * q:(r + 1) * q,
                                                                                      c * q:(c + 1) * q] + 60
    return a


@pytest.fixture
def ml_data(tmp_path):
    """60 images, labels cat / dog / owl, split train / val: rows of a|b cells."""
    from PIL import Image

    rng = np.random.default_rng(0)
    names = ["cat", "dog", "owl"]
    (tmp_path / "img").mkdir()
    rows = ["path,label,split"]
    for i in range(60):
        ks = [k for k in range(3) if rng.random() < 0.5] or [int(rng.integers(0, 3))]
        Image.fromarray(mosaic(rng, ks)).save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{'|'.join(names[k] for k in ks)},{'val' if i % 4 == 0 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def write_config(tmp_path, units=3, activation="sigmoid", data="labels.csv", extra=""):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"""model:
  input: [12, 12, 3]
  layers:
    - conv: {{filters: 6, size: 3, padding: same, activation: relu}}
    - maxpool: {{size: 2}}
    - flatten
    - dense: {{units: {units}, activation: {activation}}}
data:
  train: {data}
  cache_dir: {tmp_path / 'cache'}
{extra}train: {{epochs: 6, batch_size: 8, lr: 0.01, seed: 0}}
output: {tmp_path / 'run'}
""")
    return cfg


def test_train_evaluate_predict_export_multilabel(ml_data):
    res = cli("train", write_config(ml_data))
    assert res.exit_code == 0, res.output
    assert "multi-label: labels.csv is labels joined by the separator" in res.output
    assert "val_mAP" in res.output and "(val_map)" in res.output
    assert "calibrated" not in res.output           # per-label thresholds, not a temperature
    ckpt = ml_data / "run" / "best.npz"
    _, meta = checkpoint.load(ckpt)
    assert "calibration" not in meta
    for args, message in ((("calibrate", ckpt, ml_data / "labels.csv", "--split", "val"), "is multi-label: it is calibrated per label"),
                          (("predict", ckpt, ml_data / "img" / "0.png", "--reject", "auto"), "is multi-label"),
                          (("evaluate", ckpt, ml_data / "labels.csv", "--unknown", ml_data / "img"), "--unknown scores single-label")):
        res = cli(*args)
        assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert meta["classes"] == ["cat", "dog", "owl"]
    assert len(meta["multilabel"]["thresholds"]) == 3 and "validation" in meta["multilabel"]["tuned"]
    res = cli("evaluate", ckpt, ml_data / "labels.csv", "--split", "val", "--json", "--out", ml_data / "ev")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["images"] == 15 and rep["map"] > 0.6 and len(rep["per_label"]) == 3
    res = cli("evaluate", ckpt, ml_data / "labels.csv", "--split", "val", "--json", "--tta")
    assert res.exit_code == 0 and 0 < json.loads(res.stdout)["map"] <= 1, res.output
    assert (ml_data / "ev" / "per_label.png").read_bytes()[:4] == b"\x89PNG"
    assert not (ml_data / "ev" / "reliability.png").exists() and "ece" not in rep
    header = (ml_data / "ev" / "per_label.csv").read_text().splitlines()[0]
    assert header == "label,precision,recall,f1,ap,support,threshold"
    res = cli("predict", ckpt, ml_data / "img" / "0.png", "--json")
    r = json.loads(res.stdout)
    assert set(r["scores"]) == {"cat", "dog", "owl"}
    assert r["labels"] == [c for c, t in zip(meta["classes"], meta["multilabel"]["thresholds"]) if r["scores"][c] >= t]
    res = cli("predict", ckpt, ml_data / "img" / "0.png", "--csv")
    assert res.stdout.splitlines()[0] == "path,labels,cat,dog,owl,error"
    res = cli("evaluate", ckpt, ml_data / "img")
    assert res.exit_code == 2 and "a multi-label checkpoint is evaluated on a label file" in res.output
    (ml_data / "other.csv").write_text("path,label\nimg/0.png,cat|emu\n")
    res = cli("evaluate", ckpt, ml_data / "other.csv")
    assert res.exit_code == 2 and "label 'emu' is not one of the model's labels" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = cli("explain", ckpt, ml_data / "img" / "0.png", "--out", ml_data / "ex", "--class", "owl", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["explained"]["class"] == "owl" and set(r["labels"]) <= {"cat", "dog", "owl"}
    res = cli("explain", ckpt, ml_data / "img" / "0.png", "--out", ml_data / "ex")
    assert res.exit_code == 0 and "labels over their thresholds:" in res.output
    res = cli("report", ml_data / "run")
    assert res.exit_code == 0, res.output
    page = (ml_data / "run" / "report.html").read_text()
    assert "its val rows" in page and f"{rep['map']:.3f}" in page and 'id="per-label"' in page
    pytest.importorskip("onnxruntime")
    res = cli("export", ckpt, ml_data / "m.onnx", "--check")
    assert res.exit_code == 0, res.output
    import onnx
    props = {p.key: p.value for p in onnx.load(str(ml_data / "m.onnx")).metadata_props}
    assert props["head"] == "multilabel"
    assert json.loads(props["thresholds"]) == pytest.approx(meta["multilabel"]["thresholds"])


def test_one_hot_table_is_read_as_multilabel(ml_data):
    rows = (ml_data / "labels.csv").read_text().splitlines()[1:]
    out = ["path,cat,dog,owl,split"]
    for r in rows:
        path, labels, split = r.split(",")
        out.append(",".join([path] + [str(int(n in labels.split("|"))) for n in ("cat", "dog", "owl")] + [split]))
    (ml_data / "onehot.csv").write_text("\n".join(out) + "\n")
    from cnncli.config import load_run
    from cnncli.data.dataset import prepare
    data = prepare(load_run(write_config(ml_data, data="onehot.csv")))
    assert data.multilabel.startswith("multi-label: onehot.csv is a one-hot table")
    assert data.classes == ["cat", "dog", "owl"] and data.train.labels.shape[1] == 3
    out[3] = out[3].replace(",1,", ",yes,", 1).replace(",0,", ",yes,", 1)
    (ml_data / "onehot.csv").write_text("\n".join(out) + "\n")
    res = cli("train", write_config(ml_data, data="onehot.csv"))
    assert res.exit_code == 2 and "onehot.csv line 4: column" in res.output and "holds 'yes'" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("change, units, activation, message", [
    (lambda t: t.replace("img/0.png,", "img/0.png,cat||", 1), 3, "sigmoid", "line 2: label cell"),
    (lambda t: t.replace(",val\n", "|bird,val\n", 1), 3, "sigmoid", "label 'bird' is not one of the training labels"),
    (lambda t: t, 3, "softmax", "give layers[3] 3 units and activation: sigmoid"),
    (lambda t: t, 4, "sigmoid", "give layers[3] 3 units and activation: sigmoid"),
])
def test_bad_multilabel_input_is_one_line(ml_data, change, units, activation, message):
    f = ml_data / "labels.csv"
    f.write_text(change(f.read_text()))
    res = cli("train", write_config(ml_data, units, activation))
    assert res.exit_code == 2 and message in res.output.strip().splitlines()[-1], res.output
    assert "Traceback" not in res.output and res.output.count("error:") == 1
    assert not (ml_data / "run" / "last.npz").exists()


def test_head_multilabel_reads_single_label_cells_as_sets(ml_data):
    f = ml_data / "labels.csv"
    f.write_text(f.read_text().replace("|", ";"))        # another separator: each cell one 'label'
    from cnncli.config import load_run
    from cnncli.data.dataset import prepare
    cfg = load_run(write_config(ml_data, extra="  label_separator: ';'\n"))
    data = prepare(cfg)
    assert data.multilabel and data.classes == ["cat", "dog", "owl"]
    f.write_text(f.read_text().replace(",train\n", "|emu,train\n", 1))     # a label no val row has
    cfg = load_run(write_config(ml_data, extra="  head: multilabel\n"))   # ';' not the separator: names
    data = prepare(cfg)
    assert "cat;dog" in data.classes and "emu" in data.classes
    assert "label(s) emu have no validation image: left out of val_mAP" in " ".join(data.warnings)


@pytest.mark.parametrize("multi", [True, False])
def test_init_fits_a_starter_to_a_label_file(ml_data, multi):
    f = ml_data / "labels.csv"
    if not multi:   # one label per row: the first
        f.write_text("\n".join(r if i == 0 else r.split(",")[0] + "," + r.split(",")[1].split("|")[0] + "," +
                               r.split(",")[2] for i, r in enumerate(f.read_text().splitlines())) + "\n")
    res = cli("init", ml_data / "starter", "--data", f)
    assert res.exit_code == 0, res.output
    model = (ml_data / "starter" / "model.yaml").read_text()
    train = (ml_data / "starter" / "train.yaml").read_text()
    assert ("units: 3, activation: sigmoid" if multi else "units: 3, activation: softmax") in model
    assert ("multi-label: labels.csv" in res.output) == multi
    assert 'train: "../labels.csv"' in train and "the file's rows with split val" in train
    from cnncli.config import load_run
    cfg = load_run(ml_data / "starter" / "train.yaml")
    assert cfg.model.build(build_params=False).n_classes == 3


def test_mixup_mixes_multilabel_targets(ml_data):
    from cnncli.config import load_run
    from cnncli.data.dataset import prepare
    data = prepare(load_run(write_config(ml_data, extra="  augment: {mixup: 1.0}\n")))
    x, y = next(data.train.epoch(np.random.default_rng(0), prefetch=0))
    assert isinstance(y, Mixed) and y.first.shape == (len(x), 3) and y.second.shape == (len(x), 3)
    _, grad, _ = Loss("multilabel")(np.zeros((len(x), 3), np.float32), y)
    w = y.weight.astype(np.float64)[:, None]
    np.testing.assert_allclose(grad, (0.5 - (w * y.first + (1 - w) * y.second)) / (len(x) * 3), atol=1e-6)


def test_lr_find_sweeps_a_multilabel_model(ml_data):
    f = ml_data / "labels.csv"
    import re
    f.write_text(re.sub(r"\|[a-z|]+", "", f.read_text()))    # one label a cell: the model's K sigmoids decide
    res = cli("lr-find", write_config(ml_data), "--steps", 8, "--out", ml_data / "lr.png", "--json")
    assert res.exit_code == 0, res.output


def test_fine_tuning_that_does_not_pay_keeps_the_starting_weights_on_map(ml_data):
    first = ml_data / "run" / "best.npz"
    assert cli("train", write_config(ml_data), "--set", "train.epochs=2").exit_code == 0
    # lr 0.3: exact match falls from 93% to 40% and the loss from 0.07 to 6 while mAP stays 1.0; ranked
    # on exact match (epoch 0's old yardstick) against mAP (the epochs'), the epoch won
    res = cli("train", write_config(ml_data), "--set", f"train.init={first}", "--set", "train.lr=0.3",
              "--set", "train.epochs=1", "--set", f"output={ml_data / 'wrecked'}")
    assert res.exit_code == 0, res.output
    assert "start: train.init's weights score val_mAP" in res.output          # ranked as the epochs are
    assert "done: no epoch beat the starting weights (train.init)" in res.output
    (a, meta_a), (b, meta_b) = checkpoint.load(first), checkpoint.load(ml_data / "wrecked" / "best.npz")
    for k, v in a.items():
        np.testing.assert_array_equal(v, b[k], err_msg=k)
    assert meta_b["epoch"] == 0 and "validation" in meta_b["multilabel"]["tuned"]
    assert meta_b["multilabel"]["thresholds"] == pytest.approx(meta_a["multilabel"]["thresholds"])


def test_audit_refuses_multilabel_data_and_models_in_one_line(ml_data):
    import re
    assert cli("train", write_config(ml_data), "--set", "train.epochs=1").exit_code == 0
    multi = ml_data / "run" / "last.npz"
    f = ml_data / "labels.csv"
    (ml_data / "single.csv").write_text(re.sub(r"\|[a-z|]+", "", f.read_text()))     # each row its first label
    res = cli("train", write_config(ml_data, activation="softmax", data="single.csv"), "--set", "train.epochs=1",
              "--set", f"output={ml_data / 'single'}")
    assert res.exit_code == 0, res.output
    single = ml_data / "single" / "last.npz"
    rows = f.read_text().splitlines()
    (ml_data / "onehot.csv").write_text("\n".join(["path,cat,dog,owl"] + [
        r.split(",")[0] + "".join(f",{int(n in r.split(',')[1].split('|'))}" for n in ("cat", "dog", "owl"))
        for r in rows[1:]]) + "\n")
    out = ml_data / "audit"
    for args, says in (((f, "--checkpoint", multi), f"--checkpoint {multi} is multi-label (K sigmoid outputs)"),
                       ((f, "--checkpoint", single), "labels.csv is multi-label (a label cell holds '|')"),
                       ((ml_data / "onehot.csv", "--checkpoint", single), "onehot.csv is multi-label (a one-hot table)"),
                       ((f, "--config", {}), "the model ends in K sigmoid units (multi-label)"),
                       ((f, "--config", {"activation": "softmax"}), "(a label cell holds '|')"),
                       ((ml_data / "single.csv", "--config", {"activation": "softmax", "extra": "  head: multilabel\n"}),
                        "single.csv is multi-label (data.head: multilabel)")):
        if args[1] == "--config":     # one train.yaml, written as its case comes
            args = (args[0], "--config", write_config(ml_data, **args[2]))
        res = cli("audit", *args, "--out", out, "--folds", 2)
        assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert "one label per image: audit single-label data" in res.output and not out.exists()
    res = cli("audit", ml_data / "single.csv", "--checkpoint", single, "--out", out, "--folds", 2)
    assert res.exit_code == 0, res.output       # single-label data and model: audited


def test_predict_reads_only_the_path_column_of_a_label_file(ml_data):
    assert cli("train", write_config(ml_data), "--set", "train.epochs=1").exit_code == 0
    ckpt = ml_data / "run" / "last.npz"
    rows = (ml_data / "labels.csv").read_text().splitlines()[1:4]
    (ml_data / "onehot.csv").write_text("path,cat,dog,owl\nimg/0.png,1,0,0\nimg/1.png,0,0,0\nimg/2.png,0,1,1\n")
    (ml_data / "nolabel.csv").write_text("path,label\nimg/0.png,\nimg/1.png,cat|dog\nimg/2.png,owl\n")
    for name in ("onehot.csv", "nolabel.csv", "labels.csv"):
        res = cli("predict", ckpt, ml_data / name, "--csv")
        assert res.exit_code == 0, res.output
        assert [r.split(",")[0] for r in res.stdout.splitlines()[1:4]] == \
            [str(ml_data / r.split(",")[0]) for r in rows], res.stdout
    (ml_data / "bad.csv").write_text("file,cat\nimg/0.png,1\n")
    res = cli("predict", ckpt, ml_data / "bad.csv")
    assert res.exit_code == 2 and "bad.csv has no 'path' column (found: file, cat)" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_data_head_that_contradicts_the_data_or_model_is_refused(ml_data):
    import shutil
    for k in range(8):          # a class folder: one label per image
        (ml_data / "folder" / ("ab"[k % 2])).mkdir(parents=True, exist_ok=True)
        shutil.copy(ml_data / "img" / f"{k}.png", ml_data / "folder" / "ab"[k % 2] / f"{k}.png")
    for kwargs, says in (({"data": "folder", "units": 2, "activation": "softmax", "extra": "  head: multilabel\n"},
                          "folder is a folder of classes (one label per image): give a label file"),
                         ({"extra": "  head: single\n"}, "data.head is single but the model ends in K sigmoid units")):
        res = cli("train", write_config(ml_data, **kwargs))
        assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert "train.yaml: " in res.output and not (ml_data / "run").exists()
