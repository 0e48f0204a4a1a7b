"""`cnncli calibrate` and the end of `train`: fit the temperature and the unknown-image scores on
labelled validation images, and write them into the checkpoint (meta 'calibration' and arrays
'calibration.*'; engine/calibration.py has the math)."""

import math
from pathlib import Path

import numpy as np

from ..data.folder import SPLITS
from ..engine import calibration as cal
from ..errors import CnnError
from ..model import checkpoint
from ..model.features import logits_and_features


def fit(model, mean, std, images, labels, source):
    """Labelled validation images -> (meta['calibration'], {'calibration.<name>': array})."""
    labels = np.asarray(labels, np.int64)
    if len(labels) < 2:
        raise CnnError(f"{source}: {len(labels)} image(s) is too few to calibrate on; give a validation set")
    logits, feats = logits_and_features(model, mean, std, images)
    head = model.head
    t = cal.fit_temperature(logits, labels, head)
    before, after = np.exp(cal.log_probs(logits, head)), np.exp(cal.log_probs(logits, head, t))
    centres = cal.fit_centres(feats, labels, model.n_classes)
    scores = {"probability": cal.probability_score(logits, head, t),
              "distance": cal.held_out_distance_score(feats, labels, centres)}
    proxy = cal.class_out_auroc(logits, head, t, feats, labels, centres)
    chosen = "distance" if proxy["distance"] > proxy["probability"] else "probability"
    near = [b for b in cal.T_RANGE if abs(math.log(t / b)) < 1e-3]   # low: no mistake to fit on (NLL falls as T -> 0)
    meta = {"temperature": t, "at_bound": ("low" if near[0] < 1 else "high") if near else None, "data": str(source), "images": int(len(labels)),
            "nll": [cal.nll(logits, labels, head), cal.nll(logits, labels, head, t)],
            "ece": [cal.ece(before, labels), cal.ece(after, labels)],
            "unknown_score": chosen, "class_out_auroc": proxy}
    arrays = {**{f"calibration.{k}": centres[k] for k in ("shift", "scale", "centres")},
              **{f"calibration.{k}": np.sort(v) for k, v in scores.items()}}
    return meta, arrays


def describe(path, meta):
    """One line: what a checkpoint's calibration was fitted on and what it changed."""
    (n0, n1), (e0, e1), a = meta["nll"], meta["ece"], meta["class_out_auroc"]
    bound = {"low": " (the search's lower bound: no validation mistake to fit it on)",
             "high": " (the search's upper bound: the validation predictions are little better than chance)"}.get(
        meta.get("at_bound"), "")
    return (f"calibrated {path} on {meta['images']} images of {meta['data']}: temperature {meta['temperature']:.3f}{bound}, "
            f"NLL {n0:.4f} -> {n1:.4f}, ECE {e0:.2%} -> {e1:.2%}; unknown score: {meta['unknown_score']} "
            f"(class-out AUROC: probability {a['probability']:.3f}, distance {a['distance']:.3f})")


def write(path, meta, arrays):
    """Replace the checkpoint's calibration (meta and arrays) atomically; weights untouched."""
    old, old_meta = checkpoint.load(path)
    kept = {k: v for k, v in old.items() if not k.startswith("calibration.")}
    checkpoint.save(path, {**kept, **arrays}, {**old_meta, "calibration": meta})


def default_split(data, split, columns=None):
    """--split, or with none given the val rows of a label file that has a split column (never its
    test rows) -> (split, how the source is named)."""
    from ..data.labels import is_label_file, read_table

    if split is not None or not is_label_file(Path(data)):
        return split, f"{data}" + (f" (split {split})" if split else "")
    table = read_table(data, columns)
    if not table.has_split:
        return None, f"{data}"
    if not any(r.split == "val" for r in table.rows):
        holds = ", ".join(sorted({r.split for r in table.rows}))
        raise CnnError(f"{data} has no val rows (its split column holds {holds}): calibrate on validation images, "
                       "not test or training ones; add val rows (cnncli split) or give a folder of them")
    return "val", f"{data} (split val, as no --split was given)"


def training_warning(data, split):
    """A warning line when DATA names training images (a train/ folder or --split train), else None."""
    if split == "train" or (split is None and SPLITS.get(Path(data).name.lower()) == "train"):
        what = f"{data} --split train" if split else f"{data}"
        return (f"warning: {what} holds training images: the network has fitted them, so calibrating on them makes "
                "its confidence too high; calibrate on validation images (a val/ folder, or --split val)")
    return None


def calibrate(ckpt_path, data, split=None, cache_dir=None, workers=None):
    """Fit on a labelled folder or a label file's rows (split: 'val'; a label file with a split column
    and no split: its val rows) and write into ckpt_path -> meta."""
    from ..data.cache import decode_folder
    from ..data.labels import list_data
    from .predict import label_columns, load

    if split == "test" or (split is None and SPLITS.get(Path(data).name.lower()) == "test"):
        raise CnnError(f"{data}{' --split test' if split else ''}: test images must stay unseen to judge the "
                       "calibration; calibrate on validation images (a val/ folder, or --split val)")
    loaded = load(ckpt_path)
    if loaded.model.head == "multilabel":
        raise CnnError(f"{ckpt_path} is multi-label: it is calibrated per label by its thresholds, tuned on "
                       "validation when it trained; temperature and unknown scores apply to single-label models")
    split, source = default_split(data, split, label_columns(loaded.meta))
    listing, _ = list_data(data, loaded.classes, "evaluate", label_columns(loaded.meta), split)
    dec = decode_folder(listing, loaded.shape, loaded.resize, cache_dir, workers)
    meta, arrays = fit(loaded.model, loaded.mean, loaded.std, dec.images, dec.labels, source)
    write(ckpt_path, meta, arrays)
    return meta


def after_training(best, val, source="the validation images"):
    """train's last step: fit on its validation Batches and write into best.npz -> the line train
    prints, or None without validation images."""
    if val is None or not len(val.indices) or not Path(best).exists():
        return None
    if len(val.indices) < 2:
        return (f"not calibrated: 1 validation image ({source}) is too few to fit a temperature on; calibrate "
                f"later on more labelled validation images: cnncli calibrate {best} VAL_DATA")
    idx = np.sort(val.indices)
    model, meta, _ = checkpoint.load_model(best)
    meta_c, arrays = fit(model, val.mean, val.std, val.images[idx], val.labels[idx], source)
    write(best, meta_c, arrays)
    return describe(best, meta_c)
