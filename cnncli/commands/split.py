"""`cnncli split`: a class folder or label file -> a label file with a split column (train / val /
test), stratified per class (a multi-label file: per label, by iterative stratification), the same
rows for the same seed, a group kept in one split."""

import csv
import io
import os
from pathlib import Path

import numpy as np

from ..data.folder import natural_key, scan
from ..data.labels import _records, is_label_file, read_table
from ..data.multilabel import read_sets
from ..data.stratify import iterative
from ..errors import CnnError
from ..files import write_text_atomic


def _items(data, group, group_by_folder, columns):
    """-> [(absolute path, label, group key)] in a fixed order, whatever the order of the source."""
    if is_label_file(data):
        table = read_table(data, columns, rename="or name it with --columns '{{{role}: NAME}}'")
        if group and group not in table.columns:
            raise CnnError(f"{data} has no {group!r} column for --group (found: {', '.join(table.columns)})")
        items = [((table.file.parent / r.path).absolute(), r.label, r.fields[group] if group else None)
                 for r in table.rows]
    else:
        if group:
            raise CnnError(f"--group {group} names a label file's column; {data} is a folder: "
                           "use --group-by-folder")
        listing = scan(data, role="split")
        items = [(p.absolute(), listing.classes[k], None) for p, k in zip(listing.files, listing.labels)]
    if group_by_folder:
        items = [(p, label, str(p.parent)) for p, label, _ in items]
    return sorted(items, key=lambda it: (natural_key(it[1]), natural_key(it[0].as_posix())))


def assign(items, val, test, seed):
    """[(path, label, group)] -> one split per item. Per class (a group's class: its first item's),
    units (groups, or single images) in a seeded order fill test, then val, up to round(fraction *
    images of the class), each class keeping at least one unit for training. -> (splits, notes)."""
    rng = np.random.default_rng([seed, 28])
    units = _units(items)
    by_class = {}
    for key, idx in units.items():
        by_class.setdefault(items[idx[0]][1], []).append(key)
    out, notes = ["train"] * len(items), []
    for label in sorted(by_class, key=natural_key):
        keys = by_class[label]
        keys = [keys[j] for j in rng.permutation(len(keys))]
        n = sum(len(units[k]) for k in keys)
        want = [("test", round(test * n)), ("val", round(val * n))]
        taken, u = {"test": 0, "val": 0}, 0
        for name, target in want:
            while u < len(keys) - 1 and taken[name] < target:
                for i in units[keys[u]]:
                    out[i] = name
                taken[name] += len(units[keys[u]])
                u += 1
            if target and not taken[name]:
                notes.append(f"class {label!r} has {len(keys)} group(s) of images: none could go to {name}")
    return out, notes


def _units(items):
    """-> {unit key: item indices}: a group's items, or one item alone; in the items' order."""
    units = {}
    for i, (_, _, g) in enumerate(items):
        units.setdefault(("g", g) if g is not None else ("i", i), []).append(i)
    return units


def _multi_items(data, group, group_by_folder, columns, separator):
    """A multi-label label file -> (LabelSets, [(absolute path, label names, group key)] sorted by
    path), or None for a single-label file or a folder."""
    if not is_label_file(data):
        return None
    sets = read_sets(data, columns, separator, ignore=(group,) if group else ())
    if sets is None:
        return None
    groups = {}
    if group:
        found, records = _records(data)
        if group not in found:
            raise CnnError(f"{data} has no {group!r} column for --group (found: {', '.join(found)})")
        groups = {n: rec.get(group, "") for n, rec in records}
    items = [((data.parent / path).absolute(), names, groups.get(line)) for line, path, _, names in sets.rows]
    if group_by_folder:
        items = [(p, names, str(p.parent)) for p, names, _ in items]
    return sets, sorted(items, key=lambda it: natural_key(it[0].as_posix()))


def assign_multi(items, labels, val, test, seed):
    """[(path, label names, group)] -> (one split per item, {label: {split: images}}, notes). Units
    (groups, or single images) dealt out by iterative stratification (data/stratify.py)."""
    units = _units(items)
    index = {x: k for k, x in enumerate(labels)}
    counts = np.zeros((len(units), len(labels)), np.int64)      # (units, labels): images per label
    for u, idx in enumerate(units.values()):
        for i in idx:
            counts[u, [index[x] for x in items[i][1]]] += 1
    names = ("train", "val", "test")
    which = iterative(counts, [len(idx) for idx in units.values()], [1 - val - test, val, test], seed)
    out = ["train"] * len(items)
    for u, idx in enumerate(units.values()):
        for i in idx:
            out[i] = names[which[u]]
    per_label = {x: {s: 0 for s in names} for x in labels}
    for (_, xs, _), s in zip(items, out):
        for x in xs:
            per_label[x][s] += 1
    notes = [f"label {x!r} has {sum(n.values())} image(s): none went to {s}"
             for x, n in per_label.items() for s, share in zip(names, (1, val, test)) if share and not n[s]]
    return out, per_label, notes


def _write_multi(out, sets, items, splits, group, separator):
    """The CSV of a multi-label split: path, the labels as the source had them (joined by the
    separator, or one-hot columns), split, and the group column when given."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    one_hot = sets.layout == "one-hot"
    w.writerow(["path"] + (list(sets.labels) if one_hot else ["label"]) + ["split"] + ([group] if group else []))
    base = out.parent.absolute()
    for (path, names, g), s in zip(items, splits):
        labels = [int(x in names) for x in sets.labels] if one_hot else [separator.join(names)]
        w.writerow([Path(os.path.relpath(path, base)).as_posix()] + labels + [s] + ([g] if group else []))
    write_text_atomic(out, buf.getvalue(), "splits")


def split(data, out, val=0.1, test=0.0, seed=0, group=None, group_by_folder=False, force=False, columns=None,
          separator="|"):
    """Write out (a CSV: path, label, split; paths relative to its folder) -> (counts per split,
    number of classes, notes on classes too small to split, {label: {split: images}} for a
    multi-label file or None)."""
    for name, v in (("--val", val), ("--test", test)):
        if not 0 <= v < 1:
            raise CnnError(f"{name} must be a fraction in [0, 1), got {v}")
    if val + test >= 1:
        raise CnnError(f"--val {val} and --test {test} leave nothing to train on: their sum must be under 1")
    if group and group_by_folder:
        raise CnnError("give --group COLUMN or --group-by-folder, not both")
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise CnnError(f"--out {out}: write the splits to a .csv file")
    if out.exists() and not force:
        raise CnnError(f"{out} already exists: pick another --out, or add --force to replace it")
    multi = _multi_items(Path(data), group, group_by_folder, columns, separator)
    if multi is not None:
        sets, items = multi
        splits, per_label, notes = assign_multi(items, sets.labels, val, test, seed)
        _write_multi(out, sets, items, splits, group, separator)
        return {name: splits.count(name) for name in ("train", "val", "test")}, len(sets.labels), notes, per_label
    items = _items(Path(data), group, group_by_folder, columns)
    splits, notes = assign(items, val, test, seed)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "split"] + ([group] if group else []))
    base = out.parent.absolute()
    for (path, label, g), s in zip(items, splits):
        w.writerow([Path(os.path.relpath(path, base)).as_posix(), label, s] + ([g] if group else []))
    write_text_atomic(out, buf.getvalue(), "splits")
    return {name: splits.count(name) for name in ("train", "val", "test")}, len({it[1] for it in items}), notes, None
