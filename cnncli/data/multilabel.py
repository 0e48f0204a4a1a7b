"""Multi-label label files: an image may carry several labels, or none.

Two layouts, both with a `path` column (and optionally `split`), data.columns renaming them:
  a label column holding the labels joined by data.label_separator ('dog|cat'; an empty cell:
  none), or a one-hot table: no label column, every other column a label holding 0 or 1.
A file is read as multi-label when data.head is multilabel, when it is one-hot, or when a label
cell holds the separator. Targets are an (N, K) 0/1 matrix, one row per decoded image.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CnnError
from .folder import SPLITS, Listing, natural_key
from .labels import DEFAULT_COLUMNS, _records, is_label_file


@dataclass
class LabelSets:
    file: Path
    layout: str      # 'separator' | 'one-hot'
    labels: list     # the label names in the file's order (one-hot: its columns; else sorted)
    rows: list       # [(line, path, split or None, tuple of label names)]
    has_split: bool

    def record(self):
        import hashlib
        h = hashlib.sha256()
        for line, path, split, names in self.rows:
            h.update(f"{path}\t{'|'.join(names)}\t{split or ''}\n".encode())
        return {"path": str(self.file), "rows": len(self.rows), "sha256": h.hexdigest(), "multilabel": self.layout}


def read_sets(file, columns=None, separator="|", head="auto", ignore=()):
    """A label file -> LabelSets, or None when it is single-label (head auto, a label column and
    no cell holding the separator; or head single). ignore: columns that are no label of a one-hot
    table (split --group's)."""
    file = Path(file)
    if head == "single" or not is_label_file(file):
        return None
    names = dict(DEFAULT_COLUMNS, **(columns or {}))
    found, records = _records(file)
    if not records:
        return None      # read_table says what an empty file needs
    if names["path"] not in found:
        return None      # read_table names the missing column
    split_col = names["split"] if names["split"] in found else None
    if names["label"] in found:
        if head != "multilabel" and not any(separator in rec.get(names["label"], "") for _, rec in records):
            return None
        rows = [_separated(file, n, rec, names, separator, split_col) for n, rec in records]
        labels = sorted({x for r in rows for x in r[3]}, key=natural_key)
        return LabelSets(file, "separator", labels, rows, split_col is not None)
    label_cols = [c for c in found if c not in (names["path"], split_col, *ignore)]
    if len(label_cols) < 2:
        return None      # read_table names the missing label column
    rows = [_one_hot(file, n, rec, names, label_cols, split_col) for n, rec in records]
    return LabelSets(file, "one-hot", label_cols, rows, split_col is not None)


def _split_of(file, n, rec, split_col):
    if split_col is None:
        return None
    raw = rec.get(split_col, "")
    if raw.lower() not in SPLITS:
        raise CnnError(f"{file} line {n}: split {raw!r} must be train, val or test")
    return SPLITS[raw.lower()]


def _path_of(file, n, rec, names):
    path = rec.get(names["path"], "")
    if not path:
        raise CnnError(f"{file} line {n}: the {names['path']!r} column is empty")
    return path


def _separated(file, n, rec, names, separator, split_col):
    cell = rec.get(names["label"], "")
    parts = [p.strip() for p in cell.split(separator)] if cell else []
    if any(not p for p in parts):
        raise CnnError(f"{file} line {n}: label cell {cell!r} has an empty label between separators "
                       f"({separator!r}): write the labels as a{separator}b, or leave the cell empty for none")
    return n, _path_of(file, n, rec, names), _split_of(file, n, rec, split_col), tuple(dict.fromkeys(parts))


def _one_hot(file, n, rec, names, label_cols, split_col):
    chosen = []
    for c in label_cols:
        v = rec.get(c, "")
        if v not in ("0", "1"):
            raise CnnError(f"{file} line {n}: column {c!r} holds {v!r}: a one-hot table holds 0 or 1 in every "
                           f"column but {names['path']!r} and {names['split']!r} (remove other columns)")
        if v == "1":
            chosen.append(c)
    return n, _path_of(file, n, rec, names), _split_of(file, n, rec, split_col), tuple(chosen)


@dataclass
class MultiListing:
    """A Listing (labels: each file's first label index, -1 for none: what the decode cache keys
    on) and the label sets of its files."""
    listing: Listing
    sets: dict       # str(path) -> tuple of label indices

    def targets(self, files):
        """Decoded files (str paths) -> (N, K) float32 0/1 targets."""
        t = np.zeros((len(files), len(self.listing.classes)), np.float32)
        for i, f in enumerate(files):
            t[i, list(self.sets[str(f)])] = 1.0
        return t


def to_listing(sets, classes=None, split=None, role="train"):
    """LabelSets -> MultiListing of its rows (of `split` when given). classes: train's or a
    checkpoint's labels; a label outside them is an error. Absent paths go to listing.missing."""
    rows = [r for r in sets.rows if split is None or r[2] == split]
    if not rows:
        raise CnnError(f"{sets.file} has no {split} rows (its split column holds "
                       f"{', '.join(sorted({r[2] for r in sets.rows}))})")
    if classes is None:
        seen = {x for r in rows for x in r[3]}
        classes = [x for x in sets.labels if x in seen] if sets.layout == "separator" else list(sets.labels)
        if len(classes) < 2:
            raise CnnError(f"{sets.file} needs at least two labels{f' among its {split} rows' if split else ''}, "
                           f"found {', '.join(map(repr, classes)) or 'none'}")
    else:
        _check_known(sets, rows, classes, role)
    base = sets.file.parent
    present, missing = [], []
    for line, path, _, names in rows:
        p = base / path
        (present if p.is_file() else missing).append((p, line, names))
    if not present:
        raise CnnError(f"{sets.file}: none of its {len(rows)} paths exists (first: {missing[0][0]}); a path is "
                       f"relative to the label file's folder, {base}")
    present.sort(key=lambda item: natural_key(item[0].as_posix()))
    index = {c: k for k, c in enumerate(classes)}
    listing = Listing(sets.file, list(classes), [p for p, _, _ in present],
                      [index[n[0]] if n else -1 for _, _, n in present], [],
                      [(str(p), f"no such file ({sets.file.name} line {line})") for p, line, _ in missing])
    return MultiListing(listing, {str(p): tuple(index[x] for x in n) for p, _, n in present})


def _check_known(sets, rows, classes, role):
    whose = "the training labels" if role in ("train", "val") else "the model's labels"
    if sets.layout == "one-hot" and set(sets.labels) != set(classes):
        extra = [c for c in sets.labels if c not in classes]
        raise CnnError(f"{sets.file}: its label columns ({', '.join(sets.labels)}) differ from {whose} "
                       f"({', '.join(classes)})" + (f": {extra[0]!r} is not one of them" if extra else ""))
    for line, _, _, names in rows:
        unknown = [x for x in names if x not in classes]
        if unknown:
            raise CnnError(f"{sets.file} line {line}: label {unknown[0]!r} is not one of {whose} "
                           f"({', '.join(classes)})")


def describe(sets, listing):
    """One line saying the file was read as multi-label, and how."""
    t = listing.targets([str(f) for f in listing.listing.files])
    how = ("a one-hot table" if sets.layout == "one-hot" else "labels joined by the separator in one column")
    return (f"multi-label: {sets.file.name} is {how}; {len(t)} images, {t.shape[1]} labels, "
            f"{t.sum(axis=1).mean():.2f} labels per image, {int((t.sum(axis=1) == 0).sum())} with none")
