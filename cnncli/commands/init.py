"""`cnncli init`: a commented starter architecture and training config; with --data, one fitted
to a folder of images (classes, channels, input size, validation, epochs)."""

import json
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
# A training run. Paths: `model` is relative to this file; data and output to where you run cnncli.
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
SAMPLE = 300                   # images looked at (headers only) to choose the input


def fit_to_folder(folder):
    """Look at a folder of class sub-folders (or of train/val/test splits) -> (model text, train
    text, lines saying what was chosen and why)."""
    from PIL import Image

    from ..data.decode import GRAY_MODES
    from ..data.folder import scan, split_folders

    folder = Path(folder)
    subs = ({p.name: p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}
            if folder.is_dir() else {})
    splits = split_folders(list(subs))
    train_dir, val_dir, test_dir = folder, None, None
    if splits:
        if "train" not in splits:
            raise CnnError(f"{folder} holds {', '.join(sorted(subs))} but no train folder: point --data at "
                           "a folder with one sub-folder per class, or with train/ (and val/)")
        train_dir, val_dir, test_dir = (subs[splits[k]] if k in splits else None for k in ("train", "val", "test"))
    listing = scan(train_dir, role="data")
    files = listing.files
    step = max(1, len(files) // SAMPLE)
    sizes, gray = [], True
    for path in files[::step][:SAMPLE]:
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
                gray = gray and img.mode in GRAY_MODES
        except Exception:  # an unreadable file is skipped by training too; it does not vote here
            continue
    if not sizes:
        raise CnnError(f"{train_dir}: none of the {len(files)} files looked at could be read as an image")
    widths, heights = sorted(w for w, _ in sizes), sorted(h for _, h in sizes)
    mw, mh = widths[len(widths) // 2], heights[len(heights) // 2]
    typical = (mw * mh) ** 0.5
    side = min(SIDES, key=lambda s: (abs(s - typical), -s))   # a tie rounds up
    channels = 1 if gray else 3
    aspect = max(mw, mh) / max(min(mw, mh), 1)
    resize = "crop" if aspect > 1.3 else "stretch"
    n_classes = len(listing.classes)
    n_train = len(files) if val_dir else int(len(files) * 0.9)
    batch = 64 if n_train >= 20000 else 32
    steps = max(1, n_train // batch)
    # augmentation makes longer training pay: on 200-1,500 images, 60 epochs instead of 30 took the
    # hard shapes from 72.7% (plain, 60 epochs) to 76.7% (README, "Training recipes")
    epochs = int(min(60, max(10, -(-3000 // steps))))
    stages = {16: 2, 24: 2, 32: 3, 48: 3, 64: 4}[side]
    filters = [min(32 * 2 ** k, 256) for k in range(stages)]

    layers = []
    for f in filters:
        layers += [f"  - conv: {{filters: {f}, size: 3, padding: same, bias: false}}",
                   "  - batchnorm", "  - relu", "  - maxpool: {size: 2}"]
    last = min(filters[-1] * 2, 256)
    layers += [f"  - conv: {{filters: {last}, size: 3, padding: same, bias: false}}", "  - batchnorm",
               "  - relu", "  - globalavgpool", "  - dropout: {rate: 0.2}",
               f"  - dense: {{units: {n_classes}, activation: softmax}}   # one unit per class"]
    model = (f"# Written by `cnncli init --data {folder}`: conv-batchnorm-relu stages, each halving the map,\n"
             f"# then global average pooling and a softmax over the {n_classes} classes.\n"
             f"input: [{side}, {side}, {channels}]\nlayers:\n" + "\n".join(layers) + "\n")
    quoted = lambda path: json.dumps(str(path))  # noqa: E731  (a JSON string is YAML: '#', ': ', digits)
    data = [f"  train: {quoted(train_dir)}"]
    data += [f"  val: {quoted(val_dir)}"] if val_dir else ["  val_split: 0.1             # best.npz is chosen on this share"]
    data += [f"  resize: {resize}",
             "  augment:                     # each image: a random warp (docs/augment.md)",
             "    rotate: 10                 # degrees either way; 180 when the classes survive any rotation",
             "    scale: [0.9, 1.1]",
             "    translate: 0.1             # a tenth of the side",
             "    shear: 10",
             "    flip: false                # true for photos whose mirror image is the same class"]
    train = ("# Written by `cnncli init --data`: the strongest general recipe cnncli has, sized to the data.\n"
             "model: model.yaml\ndata:\n" + "\n".join(data) + "\n"
             f"train:\n  epochs: {epochs}\n  batch_size: {batch}\n  optimizer: adamw\n  lr: 0.002\n"
             f"  weight_decay: 0.05\n  schedule: cosine\n  warmup_epochs: 1\n  seed: 0\n"
             f"output: {quoted('runs/' + folder.resolve().name)}\n")
    from ..config import parse_architecture
    import yaml
    params = parse_architecture(yaml.safe_load(model), "model.yaml").build(build_params=False).n_params()
    why = [
        f"data: {n_classes} classes ({', '.join(listing.classes[:6])}{', ...' if n_classes > 6 else ''}), "
        f"{len(files):,} images in {train_dir}; validation: "
        + (f"{val_dir}" if val_dir else "10% of them (no val folder)")
        + (f"; {test_dir} is left for `cnncli evaluate` afterwards" if test_dir else ""),
        f"input: {side}x{side}x{channels}: the images are typically {mw}x{mh}"
        + (f", resized by centre crop (aspect {aspect:.1f})" if resize == "crop" else "")
        + ("; all grayscale" if gray else "; colour"),
        f"model: {stages} conv-batchnorm-relu stages ({', '.join(map(str, filters))} filters) and global pooling, "
        f"{params:,} parameters",
        f"train: {epochs} epochs (about {epochs * steps:,} steps at batch {batch}), AdamW lr 0.002 with a cosine "
        "schedule; each image warped at random (rotate 10, scale 0.9-1.1, translate 0.1, shear 10); flip off "
        "(set augment.flip: true for photos)",
    ]
    return model, train, why


def write_fitted(directory, folder, force=False):
    """`cnncli init DIR --data FOLDER` -> (written paths, lines saying what was chosen)."""
    model, train, why = fit_to_folder(folder)
    return _write(Path(directory), {"model.yaml": model, "train.yaml": train}, force), why
