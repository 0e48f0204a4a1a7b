"""Label files: a .csv, .tsv or .jsonl with one row per image, in place of class folders.

Columns: `path` (relative to the label file's folder), `label`, and optionally `split` (train /
val / test); data.columns renames them. A label file becomes the same Listing a class folder
does, classes in natural order and files in the order a folder scan gives (class, then path), so
the decode cache sees the same file list for the same images and reuses their decode.
"""

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import CnnError
from .folder import SPLITS, Listing, natural_key, scan

SUFFIXES = (".csv", ".tsv", ".jsonl")
DEFAULT_COLUMNS = {"path": "path", "label": "label", "split": "split"}


def is_label_file(path):
    return Path(path).suffix.lower() in SUFFIXES


@dataclass
class Row:
    line: int       # where it is in the file (1: the first data row of a CSV is line 2)
    path: str       # as written
    label: str
    split: str      # 'train' | 'val' | 'test', or None without a split column
    fields: dict    # every column, as read (for split --group)


@dataclass
class Table:
    file: Path
    rows: list       # [Row]
    columns: list    # the column names found
    has_split: bool

    def digest(self):
        """sha256 of the rows (path, label, split) in file order: what a checkpoint records."""
        h = hashlib.sha256()
        for r in self.rows:
            h.update(f"{r.path}\t{r.label}\t{r.split or ''}\n".encode())
        return h.hexdigest()

    def record(self):
        return {"path": str(self.file), "rows": len(self.rows), "sha256": self.digest()}


def _records(file):
    """-> (column names, [(line, {column: text})]) of a .csv, .tsv or .jsonl file."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CnnError(f"label file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CnnError(f"cannot read label file {file} ({getattr(e, 'strerror', None) or e})") from None
    if file.suffix.lower() == ".jsonl":
        records, columns = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise CnnError(f"{file} line {n}: not a JSON object (one object per line)") from None
            if not isinstance(obj, dict):
                raise CnnError(f"{file} line {n}: not a JSON object (one object per line)")
            columns += [k for k in obj if k not in columns]
            records.append((n, {k: "" if v is None else str(v) for k, v in obj.items()}))
        return columns, records
    reader = csv.reader(text.splitlines(), delimiter="\t" if file.suffix.lower() == ".tsv" else ",")
    lines = [(n, cells) for n, cells in enumerate(reader, 1) if any(c.strip() for c in cells)]
    if not lines:
        return [], []
    header = [c.strip() for c in lines[0][1]]
    return header, [(n, dict(zip(header, (c.strip() for c in cells)))) for n, cells in lines[1:]]


def read_table(file, columns=None, rename="in a training config, data.columns.{role} names it instead"):
    """A label file -> Table. columns: data.columns ({'path': ..., 'label': ..., 'split': ...}).
    rename: how a missing column's message says to name another one ({role}: path or label)."""
    file = Path(file)
    names = dict(DEFAULT_COLUMNS, **(columns or {}))
    found, records = _records(file)
    if not records:
        raise CnnError(f"label file {file} is empty: it needs a header row ({names['path']},{names['label']}) "
                       "and one row per image")
    for role in ("path", "label"):
        if names[role] not in found:
            raise CnnError(f"{file} has no {names[role]!r} column (found: {', '.join(found)}): rename the column "
                           f"that holds the {role} to {names[role]!r} ({rename.format(role=role)})")
    has_split = names["split"] in found
    rows = []
    for n, rec in records:
        path, label = rec.get(names["path"], ""), rec.get(names["label"], "")
        if not path or not label:
            empty = names["path"] if not path else names["label"]
            raise CnnError(f"{file} line {n}: the {empty!r} column is empty")
        split = None
        if has_split:
            raw = rec.get(names["split"], "")
            split = SPLITS.get(raw.lower())
            if split is None:
                raise CnnError(f"{file} line {n}: split {raw!r} must be train, val or test")
        rows.append(Row(n, path, label, split, rec))
    return Table(file, rows, found, has_split)


def read_paths(file, columns=None):
    """A label file's path column -> [(line, path as written)]: what predict reads. Only the path
    column is needed, so a one-hot multi-label table or a row with an empty label cell is read too."""
    file = Path(file)
    name = dict(DEFAULT_COLUMNS, **(columns or {}))["path"]
    found, records = _records(file)
    if not records:
        raise CnnError(f"label file {file} is empty: it needs a header row with a {name!r} column and one row "
                       "per image")
    if name not in found:
        raise CnnError(f"{file} has no {name!r} column (found: {', '.join(found)}): rename the column that holds "
                       f"the path to {name!r} (in a training config, data.columns.path names it instead)")
    rows = []
    for n, rec in records:
        if not rec.get(name, ""):
            raise CnnError(f"{file} line {n}: the {name!r} column is empty")
        rows.append((n, rec[name]))
    return rows


def to_listing(table, classes=None, split=None, role="train"):
    """Table -> Listing of its rows (those of `split` when given). classes: train's or a checkpoint's;
    a label outside it is an error. Paths that do not exist go to listing.missing, not to decode."""
    rows = [r for r in table.rows if split is None or r.split == split]
    if not rows:
        raise CnnError(f"{table.file} has no {split} rows (its split column holds "
                       f"{', '.join(sorted({r.split for r in table.rows}))})")
    if classes is None:
        classes = sorted({r.label for r in rows}, key=natural_key)
        if len(classes) < 2:
            found = f"only {classes[0]!r}" if classes else "none"
            where = f" among its {split} rows" if split else ""
            raise CnnError(f"{table.file} needs at least two labels{where}, found {found}")
    else:
        unknown = [r for r in rows if r.label not in classes]
        if unknown:
            r = unknown[0]
            whose = "the training labels" if role in ("train", "val") else "the model's classes"
            raise CnnError(f"{table.file} line {r.line}: label {r.label!r} is not one of {whose} "
                           f"({', '.join(classes)})")
    base = table.file.parent
    present, missing = [], []
    for r in rows:
        p = base / r.path
        (present if p.is_file() else missing).append((p, r))
    if rows and not present:
        raise CnnError(f"{table.file}: none of its {len(rows)} paths exists (first: {missing[0][0]}); a path is "
                       f"relative to the label file's folder, {base}")
    index = {c: k for k, c in enumerate(classes)}
    present.sort(key=lambda pr: (index[pr[1].label], natural_key(pr[0].as_posix())))
    return Listing(table.file, list(classes), [p for p, _ in present],
                   [index[r.label] for _, r in present], [],
                   [(str(p), f"no such file ({table.file.name} line {r.line})") for p, r in missing])


def list_data(path, classes=None, role="train", columns=None, split=None):
    """A class folder or a label file -> (Listing, Table or None). split: only that split's rows."""
    if not is_label_file(path):
        if split is not None:
            raise CnnError(f"{path} is a folder of classes: a split ({split}) needs a label file with a split column")
        return scan(path, classes=classes, role=role), None
    table = read_table(path, columns)
    if split is not None and not table.has_split:
        name = dict(DEFAULT_COLUMNS, **(columns or {}))["split"]
        raise CnnError(f"{path} has no {name!r} column (found: {', '.join(table.columns)}): the {split} rows "
                       "need one (see `cnncli split`)")
    return to_listing(table, classes, split, role), table
