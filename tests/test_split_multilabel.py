"""`cnncli split` on multi-label label files: iterative stratification per label, groups kept whole."""

import csv

import numpy as np
from typer.testing import CliRunner

from cnncli.cli.app import app
from cnncli.commands.split import split
from cnncli.data.multilabel import read_sets
from cnncli.data.stratify import iterative


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def per_label(rows, labels):
    """{label: (train, val, test)} of a written split file (labels joined by '|')."""
    out = {x: [0, 0, 0] for x in labels}
    for r in rows:
        for x in filter(None, r["label"].split("|")):
            out[x][("train", "val", "test").index(r["split"])] += 1
    return {x: tuple(n) for x, n in out.items()}


def test_iterative_by_hand():
    # units: 5 x {a}, 5 x {b}, 5 x {a, b}, 5 x {c}, 4 with no label; shares 0.6 / 0.2 / 0.2.
    # c (5 units) is rarest: wanted 3 / 1 / 1, each unit to the split wanting the most c. Then a
    # (10 units): 6 / 2 / 2; the {a, b} units a placed leave b wanting exactly what the {b} units
    # fill: 6 / 2 / 2. The unlabelled ones go where the most images are still wanted.
    counts = [[1, 0, 0]] * 5 + [[0, 1, 0]] * 5 + [[1, 1, 0]] * 5 + [[0, 0, 1]] * 5 + [[0, 0, 0]] * 4
    for seed in range(6):
        where = iterative(counts, [1] * len(counts), [0.6, 0.2, 0.2], seed)
        got = [np.array(counts)[where == s].sum(axis=0).tolist() for s in range(3)]
        assert got == [[6, 6, 3], [2, 2, 1], [2, 2, 1]], seed
        assert abs(np.bincount(where, minlength=3) - np.array([24 * 0.6, 24 * 0.2, 24 * 0.2])).max() <= 1


def test_iterative_weighs_a_unit_by_its_images():
    # two groups of 4 images of label a, four single images of a: val 0.5 wants 6 of a's 12
    where = iterative([[4], [4], [1], [1], [1], [1]], [4, 4, 1, 1, 1, 1], [0.5, 0.5, 0.0], 0)
    assert sum(n for n, s in zip([4, 4, 1, 1, 1, 1], where) if s == 1) == 6
    assert 2 not in where


def test_rare_combinations_still_reach_val_and_test(tmp_path):
    # 80 images, 6 labels, most label combinations unique: a combination-as-class split leaves
    # them all in training; per label, val and test must each get their share within one image.
    rng = np.random.default_rng(5)
    labels = list("abcdef")
    rows = []
    for i in range(80):
        chosen = [x for x in labels if rng.random() < (0.15 if x in "ef" else 0.4)] or [labels[i % 4]]
        rows.append([f"img{i}.png", "|".join(chosen)])
    src = write(tmp_path / "in.csv", ("path", "label"), rows)
    res = cli("split", src, "--val", "0.2", "--test", "0.1", "--seed", "1", "--out", tmp_path / "s.csv")
    assert res.exit_code == 0, res.output
    assert "6 labels, multi-label, stratified per label (seed 1)" in res.output
    got = per_label(read(tmp_path / "s.csv"), labels)
    for x, (tr, va, te) in got.items():
        n = tr + va + te
        assert abs(va - 0.2 * n) <= 1 and abs(te - 0.1 * n) <= 1, (x, got[x])
        assert f"  {x:<5}  {tr:>7}  {va:>7}  {te:>7}" in res.output     # the per-label table printed


def test_hand_checked_counts_and_the_same_seed_the_same_file(tmp_path):
    rows = [[f"a{i}.png", "a"] for i in range(5)] + [[f"b{i}.png", "b"] for i in range(5)] + \
           [[f"ab{i}.png", "a|b"] for i in range(5)] + [[f"c{i}.png", "c"] for i in range(5)]
    src = write(tmp_path / "in.csv", ("path", "label"), rows)
    counts, k, notes, got = split(src, tmp_path / "s0.csv", val=0.2, test=0.2, seed=0)
    assert k == 3 and notes == []
    assert {x: tuple(n.values()) for x, n in got.items()} == {"a": (6, 2, 2), "b": (6, 2, 2), "c": (3, 1, 1)}
    assert per_label(read(tmp_path / "s0.csv"), "abc") == {"a": (6, 2, 2), "b": (6, 2, 2), "c": (3, 1, 1)}
    assert sum(counts.values()) == 20
    split(src, tmp_path / "again.csv", val=0.2, test=0.2, seed=0)
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "s0.csv").read_bytes()
    split(src, tmp_path / "s1.csv", val=0.2, test=0.2, seed=1)
    assert (tmp_path / "s1.csv").read_bytes() != (tmp_path / "s0.csv").read_bytes()
    sets = read_sets(tmp_path / "s0.csv")           # what training reads back: multi-label, with splits
    assert sets.has_split and sets.labels == ["a", "b", "c"] and len(sets.rows) == 20


def test_groups_never_straddle_splits(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for g in range(40):                      # 40 subjects of 1-4 photos, each subject's labels shared
        chosen = [x for x in "abcd" if rng.random() < 0.4] or ["a"]
        rows += [[f"s{g}_{j}.png", "|".join(chosen), f"subject{g}"] for j in range(rng.integers(1, 5))]
    src = write(tmp_path / "in.csv", ("path", "label", "who"), rows)
    res = cli("split", src, "--val", "0.2", "--test", "0.2", "--group", "who", "--out", tmp_path / "g.csv")
    assert res.exit_code == 0, res.output
    out = read(tmp_path / "g.csv")
    where = {}
    for r in out:
        where.setdefault(r["who"], set()).add(r["split"])
    assert len(where) == 40 and all(len(s) == 1 for s in where.values())
    for x, (tr, va, te) in per_label(out, "abcd").items():
        n = tr + va + te                     # whole subjects move: within a subject's size (4) of the share
        assert abs(va - 0.2 * n) <= 4 and abs(te - 0.2 * n) <= 4, (x, tr, va, te)


def test_a_one_hot_table_stays_one_hot_and_its_group_column_is_no_label(tmp_path):
    rows = [[f"i{i}.png", int(i % 2 == 0), int(i % 3 == 0), int(i % 5 == 0), f"g{i // 2}"] for i in range(30)]
    src = write(tmp_path / "in.csv", ("path", "cat", "dog", "owl", "group"), rows)
    res = cli("split", src, "--val", "0.2", "--group", "group", "--out", tmp_path / "o.csv")
    assert res.exit_code == 0, res.output
    out = read(tmp_path / "o.csv")
    assert list(out[0]) == ["path", "cat", "dog", "owl", "split", "group"]
    assert {r["path"]: (r["cat"], r["dog"], r["owl"]) for r in out} == \
           {r[0]: tuple(map(str, r[1:4])) for r in rows}
    sets = read_sets(tmp_path / "o.csv", ignore=("group",))
    assert sets.layout == "one-hot" and sets.labels == ["cat", "dog", "owl"] and sets.has_split


def test_a_label_too_rare_for_a_split_is_noted(tmp_path):
    rows = [[f"x{i}.png", "a|b"] for i in range(10)] + [["rare.png", "c"]]
    src = write(tmp_path / "in.csv", ("path", "label"), rows)
    res = cli("split", src, "--val", "0.2", "--out", tmp_path / "r.csv")
    assert res.exit_code == 0, res.output
    assert "note: label 'c' has 1 image(s): none went to val" in res.output   # c, rarest, went to train
    assert f"  {'c':<5}  {1:>7}  {0:>7}  {0:>7}" in res.output
    res = cli("split", src, "--group", "who", "--out", tmp_path / "w.csv")
    assert res.exit_code == 2 and "in.csv has no 'who' column for --group (found: path, label)" in res.output


def test_columns_name_a_label_files_columns(tmp_path):
    rows = [[f"i{i}.png", ["a|b", "b", "a", "c|a"][i % 4]] for i in range(20)]
    src = write(tmp_path / "in.csv", ("file", "tags"), rows)
    res = cli("split", src, "--val", "0.2", "--columns", "{path: file, label: tags}", "--out", tmp_path / "c.csv")
    assert res.exit_code == 0, res.output
    assert "3 labels, multi-label" in res.output
    assert per_label(read(tmp_path / "c.csv"), "abc") == {"a": (12, 3, 0), "b": (8, 2, 0), "c": (4, 1, 0)}
    res = cli("split", src, "--out", tmp_path / "d.csv")
    assert res.exit_code == 2 and res.output.strip().endswith(
        "in.csv has no 'path' column (found: file, tags): rename the column that holds the path to 'path' "
        "(or name it with --columns '{path: NAME}')"), res.output
    res = cli("split", src, "--columns", "{path: file, labels: tags}", "--out", tmp_path / "d.csv")
    assert res.exit_code == 2 and "--columns: unknown key 'labels' (did you mean 'label'?)" in res.output
    assert not (tmp_path / "d.csv").exists()
