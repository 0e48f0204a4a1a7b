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
    ("file,label\na/img0.png,a\n", "has no 'path' column (found: file, label): rename one, or set data.columns.path"),
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
