"""`cnncli predict`: a checkpoint alone (weights, classes, preprocessing) applied to new images,
exactly as in training. evaluate.py scores labelled folders through the same load and _scores."""

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CnnError
from ..model import checkpoint
from ..data.cache import decode_files, describe_source
from ..data.folder import EXTENSIONS, is_image_name, natural_key
from ..data.labels import is_label_file, read_paths


@dataclass
class Loaded:
    model: object
    meta: dict
    classes: list
    shape: tuple
    resize: str
    mean: np.ndarray
    std: np.ndarray


def load(path):
    """A checkpoint, validated by checkpoint.load_model, with its preprocessing unpacked."""
    model, meta, _ = checkpoint.load_model(path)
    pre = meta["preprocessing"]
    return Loaded(model, meta, list(meta["classes"]), tuple(pre["input"]), pre.get("resize", "stretch"),
                  np.array(pre["mean"], np.float64), np.array(pre["std"], np.float64))


def label_columns(meta):
    """The label file columns a checkpoint was trained with (data.columns), or None."""
    columns = ((meta.get("config") or {}).get("data") or {}).get("columns")
    return columns if isinstance(columns, dict) else None


def _label_file_paths(file, columns):
    """A label file's paths (relative to its folder) -> (existing paths, [(path, reason)])."""
    found, missing = [], []
    for line, path in read_paths(file, columns):
        p = file.parent / path
        if p.is_file():
            found.append(p)
        else:
            missing.append((str(p), f"no such file ({file.name} line {line})"))
    return found, missing


def collect(paths, columns=None):
    """Files, folders (recursively), globs and label files (their path column) -> (image paths in
    order, [(path, reason)] not found). columns: a label file's column names (data.columns)."""
    found, missing = [], []
    for raw in paths:
        raw = os.path.normpath(raw)   # printed as typed, without a/../b
        p = Path(raw)
        if p.is_file() and is_label_file(p):
            more, absent = _label_file_paths(p, columns)
            found += more
            missing += absent
        elif p.is_dir():
            images = sorted((f for f in p.rglob("*") if f.is_file() and is_image_name(f)),
                            key=lambda f: natural_key(f.as_posix()))
            if not images:
                missing.append((str(raw), f"no images in this folder ({', '.join(sorted(EXTENSIONS))})"))
            found += images
        elif p.is_file():
            found.append(p)
        elif any(ch in str(raw) for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(str(raw), recursive=True), key=natural_key)]
            matches = [m for m in matches if m.is_file() and m.suffix.lower() in EXTENSIONS]
            if not matches:
                missing.append((str(raw), "no image matches this pattern"))
            found += matches
        else:
            missing.append((str(raw), "no such file or folder"))
    return found, missing


def tta_views(loaded):
    """Test-time views as (flip, dy, dx): the image; its mirror image, unless the checkpoint was
    trained with augment.flip off (a mirrored digit is another image); and the image shifted by
    d = max(1, round(side / 16)) pixels down, up, right and left, the cells shifted in being the
    mean, as crop_padding fills them."""
    h, w, _ = loaded.shape
    d = max(1, round(min(h, w) / 16))
    augment = ((loaded.meta.get("config") or {}).get("data") or {}).get("augment") or {}
    views = [(False, 0, 0)] + ([(True, 0, 0)] if augment.get("flip", True) else [])
    return views + [(False, d, 0), (False, -d, 0), (False, 0, d), (False, 0, -d)]


def describe_views(views):
    names = ["original" if v == (False, 0, 0) else "mirror" if v[0] else f"shift ({v[1]:+d}, {v[2]:+d})"
             for v in views]
    return f"{len(views)} views averaged: " + ", ".join(names)


def _scores(loaded, images, labels=None, batch_size=64, tta=False, temperature=1.0):
    """uint8 images (N, H, W, C) -> (probabilities (N, K), mean loss or None), through the one
    evaluation that training's validation uses too (Model.evaluate). tta: the probabilities are
    averaged over tta_views, stacked view after view in each batch. temperature: softmax(z / T)."""
    from ..kernels.augment import prepare_batch

    views = tta_views(loaded) if tta else [(False, 0, 0)]

    def batches():
        for start in range(0, len(images), batch_size):
            src = np.asarray(images[start:start + batch_size])
            n = len(src)
            xs = [prepare_batch(src, loaded.mean, loaded.std, *((None,) * 3 if v == (False, 0, 0) else
                                                                 (np.full(n, k) for k in v))) for v in views]
            x = xs[0] if len(xs) == 1 else np.concatenate(xs)
            yield x, None if labels is None else labels[start:start + batch_size]
    return loaded.model.evaluate(batches(), views=len(views), temperature=temperature)


def predict(ckpt_path, paths, top_k=3, batch_size=64, workers=None, tta=False, reject=None, reject_rate=0.05):
    """-> list of {"path", "top": [{"class", "prob"}...]} or {"path", "error"}: the paths that
    matched nothing first, then every image in the order it was found. tta: probabilities averaged
    over tta_views. Probabilities use the checkpoint's calibration temperature. reject ('auto' or a
    probability): each record also gets "decision", its class or 'unknown' (commands/unknown.py)."""
    loaded = load(ckpt_path)
    if reject is not None:   # a bad --reject is said before any image is read
        from .unknown import check_tta, rule
        if loaded.model.head == "multilabel":
            raise CnnError(f"--reject: {ckpt_path} is multi-label; it already prints no label for an image "
                           "where no label is over its threshold")
        check_tta(ckpt_path, rule(ckpt_path, reject, reject_rate)[0], tta)
    files, missing = collect(paths, label_columns(loaded.meta))
    k = min(top_k, len(loaded.classes))
    results = [{"path": p, "error": r} for p, r in missing]
    images, ok, sources = [], [], []
    for i, item in decode_files(files, loaded.shape, loaded.resize, workers, None):
        if isinstance(item, str):
            results.append({"path": str(files[i]), "error": item})
        else:
            images.append(item[0])
            sources.append(item[1])
            ok.append(i)
    probs, _ = _scores(loaded, images, batch_size=batch_size, tta=tta, temperature=checkpoint.temperature(loaded.meta))
    labels = [{}] * len(probs)
    if loaded.model.head == "multilabel":    # + the labels over their thresholds and every score
        from ..engine.multilabel_metrics import present_labels
        labels = present_labels(loaded.classes, checkpoint.thresholds_of(loaded.meta, len(loaded.classes)), probs)
    if reject is not None:
        from .unknown import decide
        decisions = decide(ckpt_path, loaded, images, probs, reject, reject_rate, tta)
    for n, (i, p, source, more) in enumerate(zip(ok, probs, sources, labels)):
        top = np.argsort(-p, kind="stable")[:k]
        r = {"path": str(files[i]), "top": [{"class": loaded.classes[j], "prob": float(p[j])} for j in top], **more}
        if reject is not None:
            r["decision"] = decisions[n]
        note = describe_source(source, loaded.shape)
        if note:
            r["converted"] = note
        results.append(r)
    order = {str(f): n for n, f in enumerate(files)}
    results.sort(key=lambda r: order.get(r["path"], -1))
    return results
