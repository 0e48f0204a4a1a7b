"""`cnncli init`: a commented starter architecture and training config."""

from pathlib import Path

from .errors import CnnError

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
  augment: {flip: false, crop_padding: 0}
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
    directory = Path(directory)
    files = {directory / "model.yaml": MODEL, directory / "train.yaml": TRAIN}
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
