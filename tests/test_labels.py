"""Label files (data.train: train.csv) in place of class folders: through the CLI, one-line errors."""

import csv
import json

import pytest
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.model import checkpoint

from .imagegen import make_folder

MODEL = """model:
  input: [12, 12, 3]
  layers:
    - conv: {filters: 4, size: 3, padding: same, activation: relu}
    - maxpool: {size: 2}
    - flatten
    - dense: {units: 3, activation: softmax}
"""


def write_rows(path, rows, header=("path", "label", "split"), delimiter=","):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def folder_rows(root, split=None, reverse=True):
    """The images of root/<class>/ as label rows (path relative to root's parent), in reverse order."""
    files = sorted(root.rglob("*.png"), reverse=reverse)
    return [[f.relative_to(root.parent).as_posix(), f.parent.name] + ([split] if split else []) for f in files]


def config(tmp_path, data, extra="", epochs=1):
    cfg = tmp_path / f"train_{len(list(tmp_path.glob('train_*.yaml')))}.yaml"
    cfg.write_text(MODEL + f"data:\n{data}  cache_dir: {tmp_path / 'cache'}\n{extra}"
                   f"train: {{epochs: {epochs}, batch_size: 8, seed: 0}}\noutput: {tmp_path / 'run'}\n")
    return cfg


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def shapes(tmp_path):
    make_folder(tmp_path / "data" / "train", per_class=8)
    make_folder(tmp_path / "data" / "val", per_class=3, seed=1)
    rows = folder_rows(tmp_path / "data" / "train", "train") + folder_rows(tmp_path / "data" / "val", "val")
    return write_rows(tmp_path / "data" / "labels.csv", rows)


def test_a_label_file_with_a_split_column_trains_and_reuses_the_folders_decode(tmp_path, shapes):
    data = tmp_path / "data"
    res = cli("train", config(tmp_path, f"  train: {data / 'train'}\n  val: {data / 'val'}\n"))
    assert res.exit_code == 0, res.output
    res = cli("train", config(tmp_path, f"  train: {shapes}\n"), "--set", f"output={tmp_path / 'run2'}")
    assert res.exit_code == 0, res.output
    assert "24 training, 9 validation images, 3 classes (a, b, c)" in res.output
    assert "read from the decode cache" in res.output, res.output
    assert "held out of" not in res.output       # validation came from its val rows, not val_split
    _, meta, _ = checkpoint.load_model(tmp_path / "run2" / "best.npz")
    record = meta["preprocessing"]["data_files"]["train"]
    assert record["path"] == str(shapes) and record["rows"] == 33 and len(record["sha256"]) == 64


def test_one_validation_row_trains_to_done_without_calibrating(tmp_path):
    root = make_folder(tmp_path / "data" / "imgs", per_class=4)
    rows = folder_rows(root, "train")
    rows[0][2] = "val"
    labels = write_rows(tmp_path / "data" / "labels.csv", rows)
    res = cli("train", config(tmp_path, f"  train: {labels}\n"))
    assert res.exit_code == 0, res.output
    best = tmp_path / "run" / "best.npz"
    assert (f"not calibrated: 1 validation image (the val rows of {labels}) is too few to fit a temperature on; "
            f"calibrate later on more labelled validation images: cnncli calibrate {best} VAL_DATA") in res.output
    assert "done: best epoch 1" in res.output and "calibration" not in checkpoint.load(best)[1]


def test_tsv_jsonl_and_renamed_columns_give_the_same_images(tmp_path):
    from cnncli.data.labels import list_data

    root = make_folder(tmp_path / "imgs", per_class=4)
    rows = folder_rows(root)
    csv_listing, _ = list_data(write_rows(tmp_path / "a.csv", rows, ("path", "label")))
    tsv_listing, _ = list_data(write_rows(tmp_path / "a.tsv", rows, ("file", "kind"), "\t"),
                               columns={"path": "file", "label": "kind"})
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"path": p, "label": l}) + "\n" for p, l in rows))
    jsonl_listing, _ = list_data(tmp_path / "a.jsonl")
    from cnncli.data.folder import scan
    folder = scan(root)
    for listing in (csv_listing, tsv_listing, jsonl_listing):
        assert [p.resolve() for p in listing.files] == [p.resolve() for p in folder.files]
        assert listing.labels == folder.labels and listing.classes == folder.classes


@pytest.mark.parametrize("content, message", [
    ("", "is empty: it needs a header row (path,label)"),
    ("file,label\na/img0.png,a\n", "has no 'path' column (found: file, label): rename the column that holds the path to 'path' (in a training config, data.columns.path names it instead)"),
    ("path,class\na/img0.png,a\n", "has no 'label' column (found: path, class)"),
    ("path,label,split\na/img0.png,a,holdout\n", "line 2: split 'holdout' must be train, val or test"),
    ("path,label\nnope/1.png,a\nnope/2.png,b\n", "none of its 2 paths exists (first: "),
])
def test_label_file_mistakes_are_one_line_exit_2(tmp_path, content, message):
    make_folder(tmp_path / "data", per_class=2)
    labels = tmp_path / "data" / "labels.csv"
    labels.write_text(content)
    res = cli("train", config(tmp_path, f"  train: {labels}\n"))
    assert res.exit_code == 2 and message in res.output, res.output
    assert res.output.count("\n") == 1 and "Traceback" not in res.output


def test_a_val_label_outside_train_is_named(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4)
    train = write_rows(tmp_path / "train.csv", folder_rows(root), ("path", "label"))
    val = write_rows(tmp_path / "val.csv", [["imgs/a/img0.png", "zebra"]], ("path", "label"))
    res = cli("train", config(tmp_path, f"  train: {train}\n  val: {val}\n"))
    assert res.exit_code == 2
    assert "val.csv line 2: label 'zebra' is not one of the training labels (a, b, c)" in res.output


def test_a_few_missing_paths_are_skipped_and_listed(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=4)
    labels = write_rows(tmp_path / "train.csv", folder_rows(root) + [["imgs/a/gone.png", "a"]], ("path", "label"))
    res = cli("train", config(tmp_path, f"  train: {labels}\n"))
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable file(s)" in res.output
    assert (tmp_path / "run" / "skipped.txt").read_text() == \
        f"{tmp_path / 'imgs' / 'a' / 'gone.png'}\tno such file (train.csv line 14)\n"


def test_evaluate_and_predict_read_a_label_file(tmp_path, shapes):
    test_dir = make_folder(tmp_path / "data" / "test", per_class=2, seed=2)
    rows = folder_rows(tmp_path / "data" / "train", "train") + folder_rows(test_dir, "test")
    labels = write_rows(shapes, rows)
    assert cli("train", config(tmp_path, f"  train: {labels}\n")).exit_code == 0
    ckpt = tmp_path / "run" / "best.npz"
    res = cli("evaluate", ckpt, labels, "--split", "test", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["images"] == 6
    assert json.loads(cli("evaluate", ckpt, labels, "--json").output)["images"] == 30
    res = cli("evaluate", ckpt, labels, "--split", "val")
    assert res.exit_code == 2 and "labels.csv has no val rows (its split column holds test, train)" in res.output
    res = cli("evaluate", ckpt, tmp_path / "data" / "train", "--split", "test")
    assert res.exit_code == 2 and "a split (test) needs a label file with a split column" in res.output
    res = cli("predict", ckpt, labels, "--json")
    assert res.exit_code == 0 and len(res.output.strip().splitlines()) == 30


# --- cnncli split ----------------------------------------------------------------------------

def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_split_is_stratified_and_the_same_for_the_same_seed(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=20)
    res = cli("split", root, "--val", "0.1", "--test", "0.2", "--seed", "3", "--out", tmp_path / "a.csv")
    assert res.exit_code == 0, res.output
    assert "wrote " in res.output and "42 train, 6 val, 12 test images, 3 classes (seed 3)" in res.output
    rows = read_csv(tmp_path / "a.csv")
    for label in "abc":
        mine = [r["split"] for r in rows if r["label"] == label]
        assert (mine.count("train"), mine.count("val"), mine.count("test")) == (14, 2, 4)
    assert all((tmp_path / r["path"]).is_file() for r in rows)   # relative to the CSV's folder
    assert cli("split", root, "--val", "0.1", "--test", "0.2", "--seed", "3", "--out", tmp_path / "b.csv").exit_code == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert cli("split", root, "--val", "0.1", "--test", "0.2", "--seed", "4", "--out", tmp_path / "c.csv").exit_code == 0
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()


def test_split_keeps_a_group_together(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=12)
    rows = [r + [f"s{i // 3}"] for i, r in enumerate(folder_rows(root, reverse=False))]   # 3 images a subject
    labels = write_rows(tmp_path / "in.csv", rows, ("path", "label", "subject"))
    res = cli("split", labels, "--val", "0.25", "--test", "0.25", "--group", "subject", "--out", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    out = read_csv(tmp_path / "s.csv")
    where = {}
    for r in out:
        where.setdefault(r["subject"], set()).add(r["split"])
    assert all(len(s) == 1 for s in where.values())
    assert {s for v in where.values() for s in v} == {"train", "val", "test"}


def test_split_by_folder_and_its_notes(tmp_path):
    for k, cls in enumerate("ab"):
        for subject in range(4):
            make_folder(tmp_path / "imgs" / cls, classes=(f"subject{subject}",), per_class=2, seed=k * 10 + subject)
    res = cli("split", tmp_path / "imgs", "--val", "0.25", "--group-by-folder", "--out", tmp_path / "f.csv")
    assert res.exit_code == 0, res.output
    where = {}
    for r in read_csv(tmp_path / "f.csv"):
        where.setdefault(r["path"].rsplit("/", 1)[0], set()).add(r["split"])
    assert len(where) == 8 and all(len(s) == 1 for s in where.values())
    assert sum(s == {"val"} for s in where.values()) == 2
    make_folder(tmp_path / "flat", per_class=3)
    res = cli("split", tmp_path / "flat", "--val", "0.5", "--group-by-folder", "--out", tmp_path / "g.csv")
    assert "note: class 'a' has 1 group(s) of images: none could go to val" in res.output


@pytest.mark.parametrize("args, message", [
    (["--val", "0.6", "--test", "0.5"], "--val 0.6 and --test 0.5 leave nothing to train on"),
    (["--val", "1.5"], "--val must be a fraction in [0, 1), got 1.5"),
    (["--group", "who"], "is a folder: use --group-by-folder"),
    (["--out", "x.txt"], "write the splits to a .csv file"),
])
def test_split_mistakes_are_one_line_exit_2(tmp_path, args, message):
    root = make_folder(tmp_path / "imgs", per_class=3)
    out = [] if "--out" in args else ["--out", tmp_path / "o.csv"]
    res = cli("split", root, *args, *out)
    assert res.exit_code == 2 and message in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "o.csv").exists()


def test_split_never_overwrites_without_force(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=3)
    (tmp_path / "o.csv").write_text("mine")
    res = cli("split", root, "--out", tmp_path / "o.csv")
    assert res.exit_code == 2 and "already exists: pick another --out, or add --force" in res.output
    assert (tmp_path / "o.csv").read_text() == "mine"
    assert cli("split", root, "--out", tmp_path / "o.csv", "--force").exit_code == 0


def test_training_from_a_split_file_is_reproducible_and_recorded(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    assert cli("split", root, "--val", "0.2", "--test", "0.1", "--out", tmp_path / "s.csv").exit_code == 0
    metas = []
    for run in ("r1", "r2"):
        res = cli("train", config(tmp_path, f"  train: {tmp_path / 's.csv'}\n"), "--set", f"output={tmp_path / run}")
        assert res.exit_code == 0, res.output
        assert "21 training, 6 validation images" in res.output
        metas.append(checkpoint.load_model(tmp_path / run / "best.npz")[1])
    timing = ("images_per_s", "data_wait", "seconds")
    same = [{k: v for k, v in m["metrics"].items() if k not in timing} for m in metas]
    assert same[0] == same[1] and "val_loss" in same[0]
    assert metas[0]["preprocessing"]["data_files"] == metas[1]["preprocessing"]["data_files"]
    from cnncli.data.labels import read_table
    assert metas[0]["preprocessing"]["data_files"]["train"]["sha256"] == read_table(tmp_path / "s.csv").digest()
