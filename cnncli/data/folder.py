"""Find the images of a labelled folder: root/<class>/**/<image>.

Classes are the sub-folders of root in natural order ("2" before "10", case-insensitive);
files inside a class are in natural order of their path. Hidden files and folders (a leading
dot) are ignored, and so are files with other extensions.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CnnError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def natural_key(text):
    # isdecimal, not isdigit: '²' is a digit that int() refuses
    return [(0, int(t), "") if t.isdecimal() else (1, 0, t.lower()) for t in re.split(r"(\d+)", str(text))]


def is_image_name(path):
    return path.suffix.lower() in EXTENSIONS and not path.name.startswith(".")


def _visible(path, root):
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
          "test": "test", "testing": "test"}


def split_folders(names):
    """{'train' | 'val' | 'test': name} when every one of the sub-folder names is a split's (in any
    case: Train, validation, ...), the first of each kind; else {}."""
    if not names or any(n.lower() not in SPLITS for n in names):
        return {}
    found = {}
    for n in names:
        found.setdefault(SPLITS[n.lower()], n)
    return found


def test_beside(train):
    """The test split next to a training folder (data/train -> data/test), or None."""
    train = Path(train)
    if SPLITS.get(train.name.lower()) != "train" or not train.parent.is_dir():
        return None
    tests = sorted(p for p in train.parent.iterdir() if p.is_dir() and SPLITS.get(p.name.lower()) == "test")
    return tests[0] if tests else None


def _refuse_split_folders(root, names, role, classes):
    """A folder whose sub-folders are train/val/test splits, given where a folder of classes is
    expected (data.train: data/shapes): say which sub-folder was meant."""
    splits = split_folders(names)
    if not splits or (classes is not None and set(names) <= set(classes)):
        return
    pick = splits.get("val" if role in ("val", "evaluate") else "train", names[0])
    where = {"train": " (set data.train to it)", "val": " (set data.val to it)"}.get(role, "")
    raise CnnError(f"{root} holds the splits {', '.join(names)}, not class folders: did you mean "
                   f"{root / pick}?{where}")


@dataclass
class Listing:
    root: Path
    classes: list        # class names in order
    files: list          # Paths
    labels: list         # class index per file
    warnings: list       # things the user should hear about
    missing: list = field(default_factory=list)   # [(path, reason)] listed but absent (label files)


def scan(root, classes=None, role="train"):
    """List root/<class>/**/<image>. With `classes` (a checkpoint's or train's list), folder names
    are matched against it by name: an unknown class is an error, a missing one is fine."""
    root = Path(root)
    hint = (f": check data.{role} in the config (a path there is relative to the config file's folder)"
            if role in ("train", "val") else "")
    if not root.exists():
        raise CnnError(f"data folder {root} does not exist{hint}")
    if not root.is_dir():
        raise CnnError(f"{root} is a file, not a folder of class sub-folders{hint}")
    try:
        entries = sorted(root.iterdir(), key=lambda p: natural_key(p.name))
    except OSError as e:
        raise CnnError(f"cannot read {root} ({e.strerror}): check its permissions") from None
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    loose = [p for p in entries if p.is_file() and is_image_name(p)]
    warnings = []
    if loose:
        warnings.append(f"{len(loose)} image(s) lie directly in {root} (e.g. {loose[0].name}) and are "
                        "ignored: put each image in a sub-folder named after its class")
    names = [p.name for p in folders]
    _refuse_split_folders(root, names, role, classes)
    if classes is None:
        if len(folders) < 2:
            found = f"only {names[0]!r}" if names else "none"
            raise CnnError(f"{root} needs at least two class sub-folders (root/<class>/<image>), found {found}")
        classes = names
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            same = [c for c in classes if c.lower() == unknown[0].lower()]   # Cat for cat
            fix = f"rename it to {same[0]!r}" if same else "rename or remove it"
            raise CnnError(f"{root}: class folder {unknown[0]!r} is not one of the model's classes "
                           f"({', '.join(classes)}): {fix}")
    files, labels = [], []
    for folder in folders:
        found = sorted((p for p in folder.rglob("*") if p.is_file() and is_image_name(p) and _visible(p, root)),
                       key=lambda p: natural_key(p.relative_to(folder).as_posix()))
        if not found and role in ("train", "init"):   # init --data writes what train accepts
            raise CnnError(f"class folder {folder} has no images ({', '.join(sorted(EXTENSIONS))}): "
                           "add images or remove the folder")
        files += found
        labels += [classes.index(folder.name)] * len(found)
    return Listing(root, list(classes), files, labels, warnings)
