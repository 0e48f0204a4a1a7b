"""`cnncli init DIR --data FOLDER --pretrained NAME`: a config that fine-tunes a pretrained network
on a folder of images: its architecture with a head for the folder's classes, its ImageNet
weights as train.init, its own preprocessing, and two phases: train.yaml trains the head on the
frozen backbone's features (cached: engine/features.py), finetune.yaml then the whole network from
phase 1's best.npz (lr 1e-4, batchnorm statistics fixed, augmentation)."""

import re
from pathlib import Path

from ..errors import CnnError
from .init import _data_line, _quoted, _refuse_empty_classes, _write, estimate, locate, look_at, relative, split_sizes

LR, BATCH = 0.001, 32
HEAD_STEPS, EPOCHS_RANGE = 1000, (10, 200)   # phase 1: about 1,000 optimizer steps for the head
FREEZE = "features"   # train.freeze: every layer up to the global pooling
EPOCHS_2, LR_2 = 10, 0.0001   # phase 2 (finetune.yaml): the whole network
CROP_AREA = (0.25, 1.0)       # phase 2's random-resized crop: ImageNet's recipe takes 8-100% of the area


def model_text(e, n_classes):
    """The shipped architecture, its 1,000-unit head cut to the folder's classes."""
    text = e.architecture_path().read_text(encoding="utf-8")
    head = re.compile(r"^(  - dense: \{units: )1000(, activation: softmax\})\s*$", re.M)
    if len(head.findall(text)) != 1:
        raise CnnError(f"{e.name}: its architecture has no single 1,000-class dense head to replace")
    return (f"# Written by `cnncli init --pretrained {e.name}`: {e.name} with a head for {n_classes} classes.\n"
            + head.sub(rf"\g<1>{n_classes}\g<2>  # {n_classes} classes (1,000 in the ImageNet weights)", text))


def _data_lines(directory, dirs, e):
    train_dir, val_dir, _ = dirs
    data = [f"  train: {_quoted(relative(directory, train_dir))}"]
    data += [f"  val: {_quoted(relative(directory, val_dir))}"] if val_dir else \
        ["  val_split: 0.1             # best.npz is chosen on this share"]
    return data + [f"  resize: {e.resize}                 # as the weights were trained: {e.preprocessing_note}",
                   f"  mean: {[round(v, 6) for v in e.mean]}   # the weights' normalisation, not the data's",
                   f"  std: {[round(v, 6) for v in e.std]}"]


def _output(directory, folder):
    return relative(directory, Path("runs") / Path(folder).resolve().name)


def phase_one_epochs(n_train):
    """Enough epochs for the head to converge, about HEAD_STEPS steps (10 to 200 epochs): the
    head on cached features is a linear model, and an epoch of it costs well under a second per
    1,000 images. On the objects task (200 images) 143 epochs reached 93% on test where 10 gave 90%
    (README, the proof)."""
    steps = max(1, -(-n_train // BATCH))
    lo, hi = EPOCHS_RANGE
    return int(min(hi, max(lo, -(-HEAD_STEPS // steps))))


def train_text(directory, dirs, e, weights_file, folder, epochs):
    return (f"# Written by `cnncli init --pretrained {e.name}`: a head trained on frozen ImageNet features\n"
            "# (phase 1; finetune.yaml beside it is phase 2). Paths are relative to this file's folder.\n"
            "model: model.yaml\ndata:\n" + "\n".join(_data_lines(directory, dirs, e)) + "\n"
            f"train:\n  init: {_quoted(weights_file)}   # the ImageNet weights; the head is reinitialised\n"
            f"  freeze: {FREEZE}             # every layer up to the global pooling: the backbone\n"
            f"  epochs: {epochs}             # about {HEAD_STEPS:,} steps: the head converges (cheap on cached features)\n"
            f"  batch_size: {BATCH}\n  optimizer: adam\n  lr: {LR}\n  schedule: cosine\n"
            f"  seed: 0\noutput: {_quoted(_output(directory, folder))}\n")


def finetune_text(directory, dirs, e, folder):
    """Phase 2: the whole network from phase 1's best.npz, lr 1e-4, batchnorm statistics fixed,
    the recipe's augmentation."""
    phase1 = _output(directory, folder)
    lo, hi = CROP_AREA
    return (f"# Written by `cnncli init --pretrained {e.name}`: phase 2, the whole network fine-tuned from\n"
            "# phase 1's best.npz (train.yaml: run it first). Paths are relative to this file's folder.\n"
            "model: model.yaml\ndata:\n" + "\n".join(_data_lines(directory, dirs, e)) + "\n"
            "  augment:                     # the ImageNet recipe's kinds: random-resized crops and flips\n"
            "    flip: true\n"
            f"    random_resized_crop: {{scale: [{lo}, {hi}], ratio: [0.75, 1.333]}}\n"
            f"train:\n  init: {_quoted(str(Path(phase1) / 'best.npz'))}   # phase 1's best: backbone and trained head\n"
            "  freeze_batchnorm: true       # batchnorm keeps its ImageNet statistics; its weight and bias train\n"
            f"  epochs: {EPOCHS_2}\n  batch_size: {BATCH}\n  optimizer: adam\n  lr: {LR_2}\n  schedule: cosine\n"
            f"  seed: 0\noutput: {_quoted(phase1 + '-finetune')}\n")


def _architecture(text):
    import yaml

    from ..config import parse_architecture

    return parse_architecture(yaml.safe_load(text), "model.yaml")


def write_pretrained(directory, folder, name, force=False):
    """-> (written paths, lines saying what was chosen and why). Writes DIR/model.yaml,
    DIR/train.yaml (phase 1), DIR/finetune.yaml (phase 2) and DIR/<name>.npz (the ImageNet
    checkpoint, as `pretrained get` writes it)."""
    from ..data.folder import scan
    from ..model import checkpoint
    from ..pretrained.catalog import entry
    from ..pretrained.convert import convert

    e = entry(name)
    e.weights_path()                 # a missing extra: one line, before the folder is looked at
    directory, folder = Path(directory), Path(folder)
    dirs = locate(folder)
    listing = scan(dirs[0], role="init")
    look = look_at(listing.files, dirs[0])
    _refuse_empty_classes(listing, look)
    n = len(listing.classes)
    weights_file = f"{name}.npz"
    sizes = split_sizes(listing, look, dirs[1])
    epochs = phase_one_epochs(sizes[0])
    texts = {"model.yaml": model_text(e, n),
             "train.yaml": train_text(directory, dirs, e, weights_file, folder, epochs),
             "finetune.yaml": finetune_text(directory, dirs, e, folder)}
    if (directory / weights_file).exists() and not force:
        raise CnnError(f"{directory / weights_file} already exists: pick another folder or pass --force")
    arrays, meta = convert(name)     # a weights file that does not read: before anything is written
    arch = _architecture(texts["model.yaml"])
    head = arch.build(build_params=False).layers[-1].n_params()
    written = _write(directory, texts, force)
    checkpoint.save(directory / weights_file, arrays, meta)
    time_line = phase_one_time(arch, sum(sizes), epochs)
    h, w, c = e.input
    why = [_data_line(listing, look, dirs),
           f"model: {name} ({e.parameters:,} parameters, ImageNet top-1 {e.top1}% as published) with its 1,000-class "
           f"head replaced by one for {n} classes, reinitialised when training starts",
           f"input: {h}x{w}x{c}, resize {e.resize}, mean {[round(v, 4) for v in e.mean]} and std "
           f"{[round(v, 4) for v in e.std]}: the preprocessing the weights were trained with, not the data's statistics",
           f"train: the backbone frozen up to the global pooling (train.freeze: {FREEZE}; its batchnorm keeps its "
           f"ImageNet statistics), so only the head's {head:,} parameters train: {epochs} epochs (about "
           f"{HEAD_STEPS:,} steps, so that it converges), Adam "
           f"lr {LR:g} with a cosine schedule, no augmentation (a linear probe needs little, and without it each "
           "image's backbone output is computed once and cached: train.feature_cache)", time_line,
           phase_two_line(directory, folder),
           "phase 2 " + estimate(arch, EPOCHS_2, BATCH, *sizes, optimizer="adam")]
    return written + [directory / weights_file], why


def phase_one_time(arch, images, epochs):
    """init's time line for train.yaml: with the feature cache, the backbone's forward pass once
    per image (timed on this machine as the frozen model's step, which is that forward and the
    head's small backward), then epochs on the cached features (0.04-0.11 s per 1,000 images,
    measured: README)."""
    from ..config.run import Train
    from ..engine.estimate import duration, time_step

    train = Train(epochs=epochs, batch_size=BATCH, optimizer="adam", lr=LR, freeze=FREEZE)
    step, warm, compiled = time_step(arch, train, budget=1.5)
    once = step * -(-images // BATCH)
    compile_note = (f"the kernels were compiled just now ({warm:.0f}s, once per install)" if compiled else
                    "a first run on a fresh install also compiles the kernels, once")
    return (f"time: about {duration(once)} on this machine to compute the frozen backbone's output once for the "
            f"{images:,} images ({step * 1e3:.0f} ms a batch of {BATCH}, timed just now; the feature cache keeps it "
            f"for later runs), then {epochs} epochs on those features, well under a second each per 1,000 images; "
            f"decoding the images once is extra, and {compile_note}")


def phase_two_line(directory, folder):
    lo = round(CROP_AREA[0] * 100)
    phase1 = Path(directory) / _output(directory, folder)
    return (f"phase 2: {Path(directory) / 'finetune.yaml'} fine-tunes the whole network from phase 1's "
            f"{phase1 / 'best.npz'}: Adam lr {LR_2:g} (a tenth of phase 1's: the ImageNet features adjust, "
            "they are not relearnt), batchnorm statistics fixed (train.freeze_batchnorm: batches of "
            f"{BATCH} from a small folder estimate them worse than ImageNet did; weight and bias still train), "
            f"flips and random-resized crops ({lo}-100% of the area; the ImageNet recipe's kinds), {EPOCHS_2} "
            "epochs. Run it after train.yaml when phase 1's validation accuracy leaves room and the time below "
            "is affordable; its best.npz stays phase 1's weights unless an epoch beats them on validation")
