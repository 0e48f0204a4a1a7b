"""`cnncli init`: a commented starter architecture and training config; with --data, one fitted
to a folder of images (classes, channels, input size, validation, epochs)."""

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CnnError

MODEL = """\
# A small CNN for 32x32 RGB images. Every layer is one list item: `- type: {arguments}`.
input: [32, 32, 3]             # height, width, channels (1 = grayscale, 3 = RGB)
layers:
  # conv: `filters` filters of size x size x (input depth); padding valid | same | N | [ph, pw]
  - conv: {filters: 16, size: 3, padding: same, activation: relu}
  - maxpool: {size: 2}         # stride defaults to size
  - conv: {filters: 32, size: 3, padding: same, activation: relu}
  - maxpool: {size: 2}
  - conv: {filters: 64, size: 3, padding: same, activation: relu}
  - globalavgpool              # h x w x c -> c; or `- flatten` into dense layers
  - dropout: {rate: 0.2}
  - dense: {units: 4, activation: softmax}   # units = number of classes
"""

TRAIN = """\
# A training run. Paths (model, data, output) are relative to this file's folder.
model: model.yaml              # or the architecture inline: {input: [...], layers: [...]}
data:
  train: data/train            # one sub-folder per class: data/train/cat/*.jpg, data/train/dog/*.jpg
  val_split: 0.1               # or  val: data/val
  resize: stretch              # stretch | crop (centre crop keeping the aspect ratio, then resize)
  augment: {flip: false, crop_padding: 0}   # and rotate, scale, translate, ...: docs/augment.md
train:
  epochs: 10
  batch_size: 32
  optimizer: adam              # sgd | adam | adamw
  lr: 0.001
  schedule: constant           # constant | step | cosine (with warmup_epochs)
  seed: 0
output: runs/starter
"""


def write_starter(directory, force=False):
    return _write(Path(directory), {"model.yaml": MODEL, "train.yaml": TRAIN}, force)


def _write(directory, texts, force):
    files = {directory / name: text for name, text in texts.items()}
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise CnnError(f"{', '.join(existing)} already exist: pick another folder or pass --force")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text)
    except OSError as e:
        raise CnnError(f"{directory}: cannot write there ({e.strerror}): pick a writable folder") from None
    return list(files)


# --- init --data: a config fitted to a folder of images ---------------------------------------

SIDES = (16, 24, 32, 48, 64)   # input sides to round to; 64 caps the cost of an epoch on a laptop
SAMPLE = 300                   # images looked at (decoded small) to choose the input
COLOURFUL = 10.0               # colourfulness (Hasler and Suesstrunk 2003) of a photo, not a grey scan
SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "test", "testing", "eval", "holdout"}


def _subfolders(folder):
    from ..data.folder import natural_key

    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
            if p.is_dir() and not p.name.startswith(".")}


def locate(folder):
    """--data FOLDER -> (train, val, test folder or None): a folder of class sub-folders, or of
    train/val/test splits; a folder that holds data sets instead is refused, naming one."""
    from ..data.folder import split_folders

    subs = _subfolders(folder)
    splits = split_folders(list(subs))
    if not splits:
        _refuse_data_sets(folder, subs)
        return folder, None, None
    if "train" not in splits:
        raise CnnError(f"{folder} holds {', '.join(sorted(subs))} but no train folder: point --data at "
                       "a folder with one sub-folder per class, or with train/ (and val/)")
    return tuple(subs[splits[k]] if k in splits else None for k in ("train", "val", "test"))


def _refuse_data_sets(folder, subs):
    """A folder of data sets taken for a folder of classes: one child that holds classes or splits
    (datasets/photos), or children whose names look like splits and hold no image themselves, every
    image lying in folders below them (datasets/{photos, photos_test})."""
    if len(subs) == 1:
        (name, child), = subs.items()
        if len(_subfolders(child)) >= 2:
            raise CnnError(f"{folder} holds one folder, {name}, and a classifier needs two classes or more: "
                           f"did you mean --data {child}?")
        return
    split_like = [n for n in subs if set(re.split(r"[^a-z]+", n.lower())) & SPLIT_WORDS]
    if not split_like or any(_has_image(sub) for sub in subs.values()):
        return
    pick = next((p for n, p in subs.items() if n not in split_like), subs[split_like[0]])
    raise CnnError(f"{folder} looks like a folder of data sets, not of classes: its sub-folders "
                   f"({', '.join(subs)}) hold no image themselves, only folders of them, and {split_like[0]} "
                   f"is named like a split: point --data at one data set, e.g. --data {pick}")


def _has_image(folder):
    from ..data.folder import is_image_name

    return any(p.is_file() and is_image_name(p) for p in folder.iterdir())


@dataclass
class Look:
    """What a sample of the training images says: their sizes, colour and readability."""
    images: int                                      # files, less the empty ones and the unreadable looked at
    every: bool = True                               # every non-empty file was looked at
    sizes: list = field(default_factory=list)        # (w, h) upright, of each readable image looked at
    gray: bool = True                                # every one looked at is a one-channel image
    colourful: int = 0                               # how many of them have colour to speak of
    unreadable: list = field(default_factory=list)   # [(path, reason)] among those looked at
    empty: list = field(default_factory=list)        # every 0-byte file


def look_at(files, where):
    """Decode a sample of `files` small, as training will (an unreadable file does not vote) -> Look."""
    from ..data.decode import BadImage, load_image

    sizes = [_bytes(p) for p in files]
    empty = [p for p, n in zip(files, sizes) if n == 0]
    rest = [p for p, n in zip(files, sizes) if n != 0]
    sample = rest[::max(1, len(rest) // SAMPLE)][:SAMPLE]
    look = Look(len(rest), len(sample) == len(rest), empty=empty)
    for path in sample:
        source = {}
        try:
            pixels = load_image(path, 32, 32, 3, source=source)
        except BadImage as e:
            look.unreadable.append((path, str(e)))
            continue
        look.sizes.append(source["size"])
        look.gray = look.gray and source["gray"]
        look.colourful += colourfulness(pixels) > COLOURFUL
    look.images -= len(look.unreadable)
    if not look.sizes:
        looked = len(look.unreadable)
        raise CnnError(f"{where}: none of its {len(files)} image files can be read as an image"
                       + (f" (e.g. {look.unreadable[0][0]}: {look.unreadable[0][1]})" if looked else
                          f" ({len(empty)} are empty, 0 bytes)") + ": replace them with readable images")
    return look


def _refuse_empty_classes(listing, look):
    """A class whose every file is empty (0 bytes) has nothing to train on: train would refuse it."""
    empty, first, readable = set(look.empty), {}, set()
    for p, label in zip(listing.files, listing.labels):   # one pass over the files
        first.setdefault(label, p)
        if p not in empty:
            readable.add(label)
    for k, name in enumerate(listing.classes):
        if k not in readable:
            raise CnnError(f"class folder {listing.root / name} holds only empty files (0 bytes, e.g. "
                           f"{first[k].name}): add images or remove the folder")


def _bytes(path):
    try:
        return path.stat().st_size
    except OSError:
        return -1


def colourfulness(rgb):
    """Hasler and Suesstrunk's colourfulness of a uint8 (h, w, 3) image: 0 for grey, ~15 and up
    for photos with some colour: std and mean of the opponent channels rg = R - G, yb = (R + G)/2 - B."""
    a = rgb.astype("float32")
    rg, yb = a[..., 0] - a[..., 1], (a[..., 0] + a[..., 1]) / 2 - a[..., 2]
    return float((rg.std() ** 2 + yb.std() ** 2) ** 0.5 + 0.3 * (rg.mean() ** 2 + yb.mean() ** 2) ** 0.5)


def choose_input(look):
    """-> (side, channels, resize, typical (w, h), aspect)."""
    widths, heights = sorted(w for w, _ in look.sizes), sorted(h for _, h in look.sizes)
    mw, mh = widths[len(widths) // 2], heights[len(heights) // 2]
    typical = (mw * mh) ** 0.5
    side = min(SIDES, key=lambda s: (abs(s - typical), -s))   # a tie rounds up
    aspect = max(mw, mh) / max(min(mw, mh), 1)
    return side, 1 if look.gray else 3, "crop" if aspect > 1.3 else "stretch", (mw, mh), aspect


def choose_flip(look):
    """Mirror images in training for colour photos (a mirrored cat is a cat), not for grey scans of
    digits or text (a mirrored 2 is no digit) -> (flip, why)."""
    n, c = len(look.sizes), look.colourful
    if look.gray:
        return False, ("flip off: the images are grayscale, as scans of digits and text are, whose mirror "
                       "image can be another class (set augment.flip: true for photos)")
    if c * 2 < n:
        return False, (f"flip off: only {c} of the {n} images looked at have colour to speak of, as "
                       "drawings, digits and text (set augment.flip: true for photos)")
    return True, (f"flip on: {c} of the {n} images looked at are in colour, as photos are, and a photo's "
                  "mirror image shows the same class (set augment.flip: false if mirroring changes "
                  "the class: text, digits, left and right)")


def model_text(side, channels, n_classes, folder, multilabel=False):
    """The network for a side x side x channels input -> (model.yaml text, conv filters in order).
    multilabel: one sigmoid unit per label instead of a softmax over the classes."""
    stages = {16: 2, 24: 2, 32: 3, 48: 3, 64: 4}[side]
    filters = [min(32 * 2 ** k, 256) for k in range(stages)]
    filters.append(min(filters[-1] * 2, 256))
    layers = []
    for k, f in enumerate(filters):
        layers += [f"  - conv: {{filters: {f}, size: 3, padding: same, bias: false}}", "  - batchnorm", "  - relu"]
        layers += ["  - maxpool: {size: 2}"] if k < stages else []
    layers += ["  - globalavgpool", "  - dropout: {rate: 0.2}",
               f"  - dense: {{units: {n_classes}, activation: sigmoid}}   # one unit per label: present or not"
               if multilabel else f"  - dense: {{units: {n_classes}, activation: softmax}}   # one unit per class"]
    head = f"a sigmoid per label for the\n# {n_classes} labels" if multilabel else f"a softmax over the\n# {n_classes} classes"
    text = (f"# Written by `cnncli init --data {folder}`: {len(filters)} conv-batchnorm-relu layers, a 2x2\n"
            f"# max-pool after each of the first {stages}, then global average pooling and {head}.\ninput: [{side}, {side}, {channels}]\nlayers:\n" + "\n".join(layers) + "\n")
    return text, filters


def describe_model(text, filters, head="a softmax"):
    """What init says about the network it wrote: every conv, the parameters and where most are."""
    import yaml

    from ..config import parse_architecture
    from ..model.summary import layer_table

    arch = parse_architecture(yaml.safe_load(text), "model.yaml")
    table = layer_table(arch)
    convs = [r["params"] for r in table["layers"] if r["type"] == "conv"]
    total = table["total_params"]
    line = (f"model: {len(filters)} conv-batchnorm-relu layers ({', '.join(map(str, filters))} filters), a "
            f"2x2 max-pool after each of the first {len(filters) - 1}, global average pooling, dropout 0.2 and "
            f"{head}: {total:,} parameters, {convs[-1]:,} of them in the last conv")
    return arch, line


def _quoted(path):
    return json.dumps(str(path))   # a JSON string is YAML: '#', ': ', digits


def relative(directory, path):
    """A path as train.yaml in `directory` writes it: relative to that folder when near it (a moved
    project keeps working), else absolute."""
    target = Path(os.path.normpath(Path(path).absolute()))
    near = os.path.relpath(target, Path(directory).absolute())
    return near if near.split(os.sep)[:2].count("..") < 2 else str(target)


def train_text(directory, dirs, resize, flip, epochs, batch, folder, val_rows=False):
    """train.yaml, its paths relative to its own folder (`directory`). val_rows: a label file
    whose split column holds val rows (they validate)."""
    def rel(path):
        return relative(directory, path)
    train_dir, val_dir, _ = dirs
    data = [f"  train: {_quoted(rel(train_dir))}"]
    data += [f"  val: {_quoted(rel(val_dir))}"] if val_dir else \
        ["  # validation: the file's rows with split val"] if val_rows else \
        ["  val_split: 0.1             # best.npz is chosen on this share"]
    data += [f"  resize: {resize}",
             "  augment:                     # each image: a random warp (docs/augment.md)",
             "    rotate: 10                 # degrees either way; 180 when the classes survive any rotation",
             "    scale: [0.9, 1.1]",
             "    translate: 0.1             # a tenth of the side",
             "    shear: 10",
             f"    flip: {'true ' if flip else 'false'}                # mirror images: "
             + ("photos (false if mirroring changes the class)" if flip else "true for photos")]
    name = Path(folder).resolve()
    output = rel(Path("runs") / (name.stem if name.is_file() else name.name))
    return ("# Written by `cnncli init --data`: the strongest general recipe cnncli has, sized to the data.\n"
            "# Paths are relative to this file's folder.\n"
            "model: model.yaml\ndata:\n" + "\n".join(data) + "\n"
            f"train:\n  epochs: {epochs}\n  batch_size: {batch}\n  optimizer: adamw\n  lr: 0.002\n"
            f"  weight_decay: 0.05\n  schedule: cosine\n  warmup_epochs: 1\n  seed: 0\n"
            f"output: {_quoted(output)}\n")


def estimate(arch, epochs, batch, n_train, n_val, optimizer="adamw", freeze=None):
    """init's line on training time, from a few steps of the network timed on this machine; with
    `freeze` (train.freeze, as init --pretrained writes it) the steps are the frozen model's."""
    from ..config.run import Train
    from ..engine.estimate import duration, run_seconds, time_step

    train = Train(epochs=epochs, batch_size=batch, optimizer=optimizer, lr=0.002, weight_decay=0.05, freeze=freeze)
    step, warm, compiled = time_step(arch, train, budget=1.5)
    total = run_seconds(step, n_train, n_val, batch, epochs)
    compile_note = (f"the kernels were compiled just now ({warm:.0f}s, once per install)" if compiled else
                    "a first run on a fresh install also compiles the kernels, once")
    return (f"time: about {duration(total)} of training on this machine ({step * 1e3:.0f} ms a step at batch "
            f"{batch}, timed just now); decoding the images once is extra, and {compile_note}")


def fit_to_folder(folder, directory="."):
    """Look at a folder of class sub-folders (or of train/val/test splits) -> (model text, train
    text, lines saying what was chosen and why). `directory`: where train.yaml goes."""
    from ..data.folder import scan

    folder = Path(folder)
    dirs = locate(folder)
    train_dir, val_dir, test_dir = dirs
    listing = scan(train_dir, role="init")
    look = look_at(listing.files, train_dir)
    _refuse_empty_classes(listing, look)
    side, channels, resize, (mw, mh), aspect = choose_input(look)
    flip, flip_why = choose_flip(look)
    n_classes = len(listing.classes)
    n_train, n_val = split_sizes(listing, look, val_dir)
    batch = 64 if n_train >= 20000 else 32
    steps = max(1, n_train // batch)
    # augmentation makes longer training pay: on 200-1,500 images, 60 epochs instead of 30 took the
    # hard shapes from 72.7% (plain, 60 epochs) to 76.7% (README, "Training recipes")
    epochs = int(min(60, max(10, -(-3000 // steps))))
    model, filters = model_text(side, channels, n_classes, folder)
    arch, model_line = describe_model(model, filters)
    train = train_text(directory, dirs, resize, flip, epochs, batch, folder)
    why = [_data_line(listing, look, dirs),
           f"input: {side}x{side}x{channels}: the images are typically {mw}x{mh}"
           + (f", resized by centre crop (aspect {aspect:.1f})" if resize == "crop" else "")
           + ("; all grayscale" if look.gray else "; colour"),
           model_line,
           f"train: {epochs} epochs (about {epochs * steps:,} steps at batch {batch}), AdamW lr 0.002 with a cosine "
           "schedule; each image warped at random (rotate 10, scale 0.9-1.1, translate 0.1, shear 10); " + flip_why,
           estimate(arch, epochs, batch, n_train, n_val)]
    return model, train, why


def split_sizes(listing, look, val_dir):
    """-> (training images, validation images): the val folder's, or the 10% val_split init writes."""
    from ..data.folder import scan

    n_train = look.images if val_dir else int(look.images * 0.9)
    return n_train, (len(scan(val_dir, listing.classes, role="data").files) if val_dir else look.images - n_train)


def _data_line(listing, look, dirs):
    train_dir, val_dir, test_dir = dirs
    n = len(listing.classes)
    line = (f"data: {n} classes ({', '.join(listing.classes[:6])}{', ...' if n > 6 else ''}), "
            f"{look.images:,} images in {train_dir}")
    bad = [f"{len(look.empty)} empty file(s) (0 bytes, e.g. {look.empty[0]})"] if look.empty else []
    if look.unreadable:
        path, reason = look.unreadable[0]
        of = "" if look.every else f" of the {len(look.sizes) + len(look.unreadable)} looked at"
        bad.append(f"{len(look.unreadable)} unreadable{of} (e.g. {path}: {reason})")
    if bad:
        line += f", leaving out {' and '.join(bad)}, as training will (it lists them in skipped.txt)"
    line += "; validation: " + (f"{val_dir}" if val_dir else "10% of them (no val folder)")
    return line + (f"; {test_dir} is left for `cnncli evaluate` afterwards" if test_dir else "")


def write_fitted(directory, folder, force=False):
    """`cnncli init DIR --data FOLDER` -> (written paths, lines saying what was chosen)."""
    model, train, why = fit_to_folder(folder, directory)
    return _write(Path(directory), {"model.yaml": model, "train.yaml": train}, force), why
