"""cnncli audit: confident learning's thresholds by hand, the k-fold softmax regression, pHash and
pairs, and the command end to end on a tiny folder with a planted flip, copy, broken file, tiny
image and small class."""

import csv
import io

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cnncli.data.duplicates import MAX_BITS, DCT, READ, distance, find_pairs, fingerprint, hamming, phash, versions
from cnncli.engine.confident import (L2_GRID, _softmax, audit_probabilities, fit_softmax, label_issues,
                                     out_of_fold, ranking, stratified_folds, thresholds)
from cnncli.errors import CnnError

# labels and probabilities worked by hand below
LABELS = np.array([0, 0, 1, 1, 2, 2, 2])
PROBS = np.array([[0.8, 0.1, 0.1],
                  [0.6, 0.3, 0.1],
                  [0.2, 0.5, 0.3],
                  [0.5, 0.3, 0.2],
                  [0.1, 0.1, 0.8],
                  [0.1, 0.2, 0.7],
                  [0.5, 0.45, 0.05]])


def test_thresholds_by_hand():
    # t0 = (0.8 + 0.6) / 2; t1 = (0.5 + 0.3) / 2; t2 = (0.8 + 0.7 + 0.05) / 3
    np.testing.assert_allclose(thresholds(PROBS, LABELS, 3), [0.7, 0.4, 1.55 / 3])
    assert thresholds(PROBS[:2], LABELS[:2], 3)[1:].tolist() == [1.0, 1.0]   # no images: nothing is it


def test_label_issues_by_hand():
    suspect, suggested, score = label_issues(PROBS, LABELS)
    # row 6 (given 2): p2 = 0.05 < t2; p0 = 0.5 < t0 = 0.7 but p1 = 0.45 >= t1 = 0.4: a suspect, and
    # the suggestion is 1 (the class above its threshold), not 0 (the larger probability)
    # row 1 (given 0): p0 = 0.6 < 0.7, but no other class reaches its threshold: not a suspect
    # row 3 (given 1): p1 = 0.3 < 0.4, p0 = 0.5 < 0.7, p2 = 0.2 < 0.517: no class over its threshold,
    # but p0 = 0.5 > p1: a suspect by the second rule only (strict: not), suggesting 0
    assert suspect.tolist() == [False] * 3 + [True] + [False] * 2 + [True]
    assert suggested[6] == 1 and suggested[3] == 0
    assert label_issues(PROBS, LABELS, strict=True)[0].tolist() == [False] * 6 + [True]
    # the suspects by margin (row 6: 0.45, row 3: 0.2), then the rest by margin
    assert ranking(PROBS, LABELS).tolist()[:2] == [6, 3]
    assert ranking(PROBS, LABELS).tolist()[2:] == [2, 1, 5, 0, 4]     # margins -0.2, -0.3, -0.5, -0.7, -0.7
    np.testing.assert_allclose(score, [0.1 - 0.8, 0.3 - 0.6, 0.3 - 0.5, 0.5 - 0.3, 0.1 - 0.8, 0.2 - 0.7, 0.5 - 0.05])


def test_folds_are_stratified_and_seeded():
    labels = np.repeat([0, 1, 2], [10, 7, 3])
    fold = stratified_folds(labels, 5, seed=3)
    for c in range(3):
        counts = np.bincount(fold[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert (stratified_folds(labels, 5, seed=3) == fold).all()


def _blobs(rng, n=40, k=3, d=5):
    centres = rng.normal(0, 4, (k, d))
    y = np.repeat(np.arange(k), n)
    return centres[y] + rng.normal(0, 1, (len(y), d)), y


def test_fit_softmax_reaches_the_minimum():
    x, y = _blobs(np.random.default_rng(0))
    l2 = 1e-2
    w, b = fit_softmax(x, y, 3, l2=l2, steps=2000)
    onehot = np.eye(3)[y]
    p = _softmax(x @ w + b)
    grad_w = x.T @ (p - onehot) / len(y) + l2 * w
    grad_b = (p - onehot).mean(axis=0)
    assert np.abs(grad_w).max() < 1e-4 and np.abs(grad_b).max() < 1e-4


@pytest.mark.parametrize("n, d", [(120, 5), (30, 200)])       # primal, and the dual (fewer images than features)
def test_fit_softmax_gradient_is_zero_at_its_answer(n, d):
    rng = np.random.default_rng(3)
    y = np.arange(n) % 3
    x = rng.normal(0, 1, (3, d))[y] + rng.normal(0, 1, (n, d))
    l2 = 0.1
    w, b = fit_softmax(x, y, 3, l2=l2, steps=3000)
    assert w.shape == (d, 3)
    r = _softmax(x @ w + b) - np.eye(3)[y]
    assert np.abs(x.T @ r / n + l2 * w).max() < 1e-5 and np.abs(r.mean(axis=0)).max() < 1e-5


def _similar_flips(seed):
    """4 classes of 60 blobs; 20% of the labels swapped between classes 0<->1 and 2<->3."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 60)
    x = rng.normal(0, 1.5, (4, 30))[y] + rng.normal(0, 1, (len(y), 30))
    idx = rng.choice(len(y), 48, replace=False)
    noisy = y.copy()
    noisy[idx] = y[idx] ^ 1
    return x, y, noisy


def test_audit_probabilities_picks_l2_by_log_loss_and_beats_one_pass():
    x, y, noisy = _similar_flips(1)
    flipped = noisy != y

    def precision(p):
        suspect, _, margin = label_issues(p, noisy)
        return flipped[np.lexsort((-margin, ~suspect))[:48]].mean()

    probs, l2, left = audit_probabilities(x, noisy, 4)
    losses = {a: -np.log(out_of_fold(x, noisy, 4, l2=a)[np.arange(240), noisy]).mean() for a in L2_GRID}
    assert l2 == min(losses, key=losses.get)
    assert 30 <= left <= 60                         # the first pass's suspects sat out the second
    assert precision(out_of_fold(x, noisy, 4)) < 0.7 and precision(probs) > 0.95   # 0.646 and 0.979


def test_out_of_fold_finds_flipped_labels():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng)
    flipped = rng.choice(len(y), 8, replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + 1) % 3
    suspect, suggested, margin = label_issues(out_of_fold(x, noisy, 3, k=5), noisy)
    assert set(np.argsort(-margin)[:8]) == set(flipped)        # the 8 largest margins are the 8 flips
    found = np.flatnonzero(suspect)
    assert len(found) >= 6 and set(found) <= set(flipped)      # two flips keep p_true under t_true
    assert (suggested[found] == y[found]).all()                 # and the true class is suggested


def test_dct_rows_are_orthogonal_and_hamming_counts_bits():
    gram = DCT @ DCT.T
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-9)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2 ** 63, 50, dtype=np.uint64), rng.integers(0, 2 ** 63, 50, dtype=np.uint64)
    assert hamming(a, b).tolist() == [bin(int(p) ^ int(q)).count("1") for p, q in zip(a, b)]


def test_phash_of_a_constant_image_is_its_dc_bit():
    assert phash(np.full((32, 32), 100, np.uint8)) == 1 << 63   # every AC coefficient 0 = the median


def _photo(seed, size=64):
    """A smooth random picture (low frequencies dominate, as in photos)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def test_copies_are_near_and_different_pictures_are_not(tmp_path):
    img = _photo(0)
    img.save(tmp_path / "a.png")
    img.save(tmp_path / "a.jpg", quality=70)
    img.resize((32, 32)).save(tmp_path / "small.png")
    img.crop((3, 3, 61, 61)).save(tmp_path / "crop.png")            # 4.7% off each side
    for s in range(1, 6):
        _photo(s).save(tmp_path / f"other{s}.png")
    names = ["a.png", "a.jpg", "small.png", "crop.png"] + [f"other{s}.png" for s in range(1, 6)]
    prints = [fingerprint(tmp_path / n) for n in names]
    base = prints[0].phash
    assert [int(distance(base, p.phash)) for p in prints[:3]] == [0, 0, 0]
    assert distance(base, prints[3].phash) <= 4                  # the whole crop meets a's 4% cut
    assert hamming(base[0], prints[3].phash[0]) > MAX_BITS       # which the whole of a alone misses
    pairs = {(names[p.a], names[p.b]) for p in find_pairs(prints)}
    assert {("a.png", n) for n in names[1:4]} <= pairs
    assert not any(n.startswith("other") for pair in pairs for n in pair)


def test_exact_copies_and_unreadable_files(tmp_path):
    _photo(0).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "bad.png").write_bytes(b"not an image")
    prints = [fingerprint(tmp_path / n) for n in ("a.png", "b.png", "bad.png")]
    assert prints[2].error and prints[2].phash is None
    pairs = find_pairs(prints)
    assert [(p.a, p.b, p.match) for p in pairs] == [(0, 1, "exact")]


MODEL = """model:
  input: [12, 12, 3]
  layers:
    - conv: {filters: 4, size: 3, padding: same, activation: relu}
    - maxpool: {size: 2}
    - flatten
    - dense: {units: 3, activation: softmax}
data:
  train: data
  val_split: 0.2
train:
  epochs: 3
  batch_size: 8
  lr: 0.01
output: run
"""


def coloured(rng, label, size=12):
    """Class = the colour (red, green, blue); each picture a smooth random pattern of its own, so
    that no two are perceptually alike."""
    g = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4)).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC), np.float64)
    a = np.stack([g * 0.3] * 3, axis=-1)
    a[..., label] = g
    return Image.fromarray(a.astype(np.uint8))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """train/ and test/ of 3 blob classes; one image of a filed under b, a copy of a train image in
    test, a broken file, a 4x4 image, and class c with few images. -> (root, config, checkpoint)."""
    from cnncli.commands.train import train
    from cnncli.engine.progress import QuietReporter

    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(0)
    for split, counts in (("train", (16, 16, 5)), ("test", (4, 4, 2))):
        for k, (name, n) in enumerate(zip("abc", counts)):
            (root / "data" / split / name).mkdir(parents=True)
            for i in range(n):
                coloured(rng, k).save(root / "data" / split / name / f"{name}{i}.png")
    coloured(rng, 0).save(root / "data" / "train" / "b" / "really_a.png")
    (root / "data" / "test" / "a" / "copy.png").write_bytes((root / "data" / "train" / "a" / "a3.png").read_bytes())
    (root / "data" / "train" / "a" / "broken.png").write_bytes(b"\x89PNG broken")
    coloured(rng, 1, 4).save(root / "data" / "train" / "b" / "tiny.png")
    (root / "train.yaml").write_text(MODEL.replace("train: data", f"train: {root / 'data' / 'train'}"))
    train(root / "train.yaml", ["train.epochs=6"], reporter=QuietReporter())
    return root, root / "train.yaml", root / "run" / "last.npz"


def _read(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_audit_with_a_checkpoint_finds_what_was_planted(planted):
    from cnncli.commands.audit import audit

    root, _, ckpt = planted
    summary = audit(root / "data", root / "out", checkpoint=ckpt, folds=3)
    rows = _read(root / "out" / "audit.csv")
    assert [r["issue"] for r in rows] == sorted((r["issue"] for r in rows), key=["label", "duplicate",
                                                "unreadable", "tiny", "imbalance"].index)
    labels = [r for r in rows if r["issue"] == "label"]
    assert labels[0]["path"].endswith("really_a.png") and labels[0]["suggested"] == "a"
    assert len(labels) <= 2
    dup = [r for r in rows if r["issue"] == "duplicate"]
    assert len(dup) == 1 and dup[0]["path"].endswith("copy.png") and dup[0]["other"].endswith("a3.png")
    assert "exact" in dup[0]["detail"] and "train/test" in dup[0]["detail"]
    assert [r["path"].rsplit("/", 1)[1] for r in rows if r["issue"] == "unreadable"] == ["broken.png"]
    assert [r["path"].rsplit("/", 1)[1] for r in rows if r["issue"] == "tiny"] == ["tiny.png"]
    assert [r["given"] for r in rows if r["issue"] == "imbalance"] == ["c"]
    # c has 5 + 2 images; a 16 + broken + 4 + copy = 22 and b 16 + really_a + tiny + 4 = 22: the median
    imb = [r for r in rows if r["issue"] == "imbalance"][0]
    assert float(imb["score"]) == pytest.approx(1 - 7 / 22, abs=1e-4)
    assert summary["ranking"][0].endswith("really_a.png") and len(summary["ranking"]) == summary["readable"]
    assert summary["counts"] == {"label": len(labels), "duplicate": 1, "unreadable": 1, "tiny": 1, "imbalance": 1}
    assert (root / "out" / "audit.png").stat().st_size > 1000
    before = sorted(p.name for p in (root / "data").rglob("*"))
    assert before == sorted(p.name for p in (root / "data").rglob("*"))   # nothing moved or deleted


def test_audit_with_k_trainings(planted):
    from cnncli.commands.audit import audit

    root, config, _ = planted
    started = []
    summary = audit(root / "data", root / "out_k", config=config, overrides=["train.epochs=6"], folds=2,
                    progress=lambda f, k: started.append((f, k)))
    assert started == [(0, 2), (1, 2)]
    labels = [r for r in summary["rows"] if r["issue"] == "label"]
    assert labels and labels[0]["path"].endswith("really_a.png")
    assert sorted(p.name for p in (root / "out_k" / "folds").iterdir()) == ["0", "1"]
    assert "2 trainings from scratch" in summary["source"]


def test_cli_prints_a_summary_and_refuses_bad_input(planted, tmp_path):
    from cnncli.cli.app import app

    root, config, ckpt = planted
    res = CliRunner().invoke(app, ["audit", str(root / "data"), "--checkpoint", str(ckpt), "--out",
                                   str(tmp_path / "o"), "--folds", "3"])
    assert res.exit_code == 0, res.output
    assert "label suspects" in res.output and "really_a.png" in res.output
    for args, says in (([str(root / "data"), "--out", str(tmp_path / "x")], "give --checkpoint"),
                       ([str(root / "nothing"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x")],
                        "no such folder"),
                       ([str(root / "data"), "--checkpoint", str(ckpt), "--config", str(config), "--out",
                         str(tmp_path / "x")], "one of them"),
                       ([str(root / "data"), "--config", str(config), "--set", "train.lr=-1", "--out",
                         str(tmp_path / "x")], "train.lr")):
        res = CliRunner().invoke(app, ["audit", *args])
        assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_images_under_16_pixels_get_exact_copies_only(tmp_path):
    small = np.asarray(_photo(0, 8))
    Image.fromarray(small).save(tmp_path / "a.png")
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    lookalike = small.copy()
    lookalike[0, 0] ^= 1
    Image.fromarray(lookalike).save(tmp_path / "b.png")
    prints = [fingerprint(tmp_path / n) for n in ("a.png", "copy.png", "b.png")]
    assert all(p.phash is None for p in prints)                         # not even hashed
    grey = [np.asarray(Image.open(tmp_path / n).convert("L").resize((READ, READ))) for n in ("a.png", "b.png")]
    assert distance(versions(grey[0])[0], versions(grey[1])[0]) <= MAX_BITS     # a hash alone would pair them
    assert [(p.a, p.b, p.match) for p in find_pairs(prints)] == [(0, 1, "exact")]


def test_tiny_is_half_the_smaller_of_the_input_and_the_median_image():
    from types import SimpleNamespace

    from cnncli.commands.audit import _tiny_side
    from cnncli.data.duplicates import Fingerprint

    def result(sizes, side):
        return SimpleNamespace(ok=np.arange(len(sizes)), prints=[Fingerprint(size=s) for s in sizes],
                               decoded=np.zeros((len(sizes), side, side, 3), np.uint8))
    assert _tiny_side(result([(64, 64), (64, 80), (30, 64)], 224)) == 32    # crops under a 224 network
    assert _tiny_side(result([(500, 400), (640, 480), (800, 600)], 32)) == 16


def test_audit_reads_a_label_file_through_columns(planted, tmp_path):
    from cnncli.cli.app import app
    from cnncli.commands.audit import audit

    root, config, ckpt = planted
    files = sorted(p for p in (root / "data").rglob("*.png"))
    labels = tmp_path / "labels.csv"
    labels.write_text("file,kind,part\n" + "".join(f"{p},{p.parent.name},{p.parent.parent.name}\n" for p in files))
    args = ["audit", str(labels), "--checkpoint", str(ckpt), "--folds", "3", "--out"]
    res = CliRunner().invoke(app, [*args, str(tmp_path / "o"), "--columns", "{path: file, label: kind, split: part}"])
    assert res.exit_code == 0, res.output
    rows = _read(tmp_path / "o" / "audit.csv")
    assert [r for r in rows if r["issue"] == "label"][0]["path"].endswith("really_a.png")
    dup = [r for r in rows if r["issue"] == "duplicate"]
    assert len(dup) == 1 and dup[0]["detail"].endswith(("in train/test", "in test/train"))   # split column read
    for more, says in (([], "labels.csv has no 'path' column (found: file, kind, part): rename the column that "
                            "holds the path to 'path' (or name it with --columns '{path: NAME}')"),
                       (["--columns", "{path: file}"], "labels.csv has no 'label' column (found: file, kind, part)"),
                       (["--columns", "{path: file, lable: kind}"], "--columns: unknown key 'lable' (did you mean "
                                                                    "'label'?)"),
                       (["--columns", "label=kind"], "e.g. --columns '{path: file, label: class}'")):
        res = CliRunner().invoke(app, [*args, str(tmp_path / "x"), *more])
        assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert not (tmp_path / "x").exists()
    # with --config and no --columns, the config's data.columns name them (read before any training)
    cfg = tmp_path / "cols.yaml"
    cfg.write_text(config.read_text().replace("  val_split: 0.2",
                                              "  val_split: 0.2\n  columns: {path: file, label: kind}"))
    absent = tmp_path / "absent.csv"
    absent.write_text("file,kind\nnowhere/a.png,a\nnowhere/b.png,b\n")
    with pytest.raises(CnnError, match="none of its 2 paths exists"):
        audit(absent, tmp_path / "y", config=cfg)
    with pytest.raises(CnnError, match="has no 'path' column"):
        audit(absent, tmp_path / "y", config=config)
