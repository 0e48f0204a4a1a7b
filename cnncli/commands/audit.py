"""`cnncli audit DATA --out DIR (--checkpoint CKPT | --config TRAIN_YAML)`: the images whose label
is probably wrong (confident learning on out-of-fold probabilities, engine/confident.py), copies
within and across splits (data/duplicates.py), unreadable and tiny images, and small classes.
Writes DIR/audit.csv (most suspect first) and DIR/audit.png (the top label suspects). Nothing is
moved or deleted.

Out-of-fold probabilities come either from a checkpoint's penultimate features (any checkpoint:
one trained on these images, or a pretrained backbone) and k softmax regressions on them, or from
k trainings from scratch with a training config (--config), each on k-1 folds."""

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.duplicates import find_pairs, fingerprint
from ..data.folder import natural_key, scan, split_folders
from ..data.labels import is_label_file, read_table, to_listing
from ..errors import CnnError
from ..files import output_folder, write_text_atomic

COLUMNS = ("path", "issue", "given", "suggested", "score", "other", "split", "detail")
ORDER = ("label", "duplicate", "unreadable", "tiny", "imbalance")   # the csv's groups, in this order
SMALL_CLASS = 0.5    # a class with fewer images than this share of the median class is flagged


@dataclass
class Images:
    """Every listed image of DATA, all splits together."""
    classes: list
    files: list             # Paths
    labels: np.ndarray      # (N,) class index
    splits: list            # 'train' | 'val' | 'test' per image
    missing: list = field(default_factory=list)   # [(path, reason)] listed but absent (label files)


def gather(data, columns=None):
    """A class folder, a folder of train/val/test class folders, or a label file -> Images.
    columns: the label file's column names ({'path': ..., 'label': ..., 'split': ...})."""
    data = Path(data)
    if is_label_file(data):
        table = read_table(data, columns, rename="or name it with --columns '{{{role}: NAME}}'")
        listing = to_listing(table)
        split_of = {str(data.parent / r.path): r.split or "train" for r in table.rows}
        return Images(listing.classes, listing.files, np.array(listing.labels, np.int64),
                      [split_of[str(p)] for p in listing.files], listing.missing)
    if not data.is_dir():
        raise CnnError(f"{data}: no such folder (give a folder of class sub-folders, one of train/val/test "
                       "folders, or a label file)")
    names = [p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")]
    splits = split_folders(names)
    if not splits:
        listing = scan(data, role="audit")
        return Images(listing.classes, listing.files, np.array(listing.labels, np.int64),
                      ["train"] * len(listing.files))
    classes = sorted({c.name for s in splits.values() for c in (data / s).iterdir()
                      if c.is_dir() and not c.name.startswith(".")}, key=natural_key)
    files, labels, where = [], [], []
    for role in ("train", "val", "test"):
        if role in splits:
            listing = scan(data / splits[role], classes=classes, role="audit")
            files += listing.files
            labels += listing.labels
            where += [role] * len(listing.files)
    return Images(classes, files, np.array(labels, np.int64), where)


def features(loaded, images, batch_size=64):
    """uint8 (N, h, w, c) -> (N, D) float32: the penultimate layer's output, global-average-pooled
    where it is a feature map (model/features.py), inference mode."""
    from ..model.features import logits_and_features

    _has_features(loaded)
    return logits_and_features(loaded.model, loaded.mean, loaded.std, images, batch_size, pool=True)[1].astype(np.float32)


def _has_features(loaded):
    from ..model.features import penultimate
    from ..model.graph import INPUT

    if penultimate(loaded.model) == INPUT:
        raise CnnError("the checkpoint's last layer reads the input directly: it has no penultimate "
                       "features to audit with (give a network with a hidden layer)")


def _decode(imgs, keep, shape, resize):
    """The readable images (indices keep) decoded as the model reads them -> uint8 (n, h, w, c)."""
    from ..data.cache import decode_files

    out = np.zeros((len(keep), *shape), np.uint8)
    bad = {}
    for i, item in decode_files([imgs.files[k] for k in keep], shape, resize, None, None):
        if isinstance(item, str):
            bad[keep[i]] = item
        else:
            out[i] = item[0]
    return out, bad


@dataclass
class Audit:
    images: Images
    prints: list                 # [Fingerprint] per image
    ok: np.ndarray               # indices of the readable images
    decoded: np.ndarray          # (len(ok), h, w, c) uint8
    probs: np.ndarray = None     # (len(ok), K) out-of-fold
    feats: np.ndarray = None     # (len(ok), D) or None
    seconds: dict = field(default_factory=dict)
    source: str = ""             # where the probabilities came from, in words


def audit(data, out, checkpoint=None, config=None, overrides=(), folds=5, seed=0, tiny=None, top=48,
          progress=None, columns=None):
    """Run every check on DATA and write OUT/audit.csv and OUT/audit.png. -> summary dict.
    progress(f, k): called as each of the k trainings of --config starts. columns: a label file's
    column names (config.parse_columns); by default --config's data.columns, else path, label, split."""
    if (checkpoint is None) == (config is None):
        raise CnnError("give --checkpoint CKPT (features of a trained or pretrained network) or --config "
                       "TRAIN_YAML (k trainings from scratch), one of them")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CnnError(f"--out {out} is a file: give a folder")
    run = None
    if config is not None:   # a config that cannot train fails now, not after the hashes
        import dataclasses

        from .. import config as configs
        run = configs.load_run(config, overrides)
        columns = columns or dataclasses.asdict(run.data.columns)
    refuse_multilabel(data, columns, checkpoint, run)
    imgs = gather(data, columns)
    t0 = time.perf_counter()
    prints = [fingerprint(p) for p in imgs.files]
    ok = np.array([i for i, p in enumerate(prints) if p.error is None], np.int64)
    seconds = {"hashes": time.perf_counter() - t0}
    if checkpoint is not None:
        result = _from_checkpoint(imgs, prints, ok, checkpoint, folds, seed, seconds)
    else:
        result = _from_trainings(imgs, prints, ok, config, overrides, folds, seed, out, seconds, progress)
    rows, counts, ranking = _rows(result, tiny)
    _write(out, rows, result, top)
    return {"images": len(imgs.files), "readable": int(len(result.ok)), "classes": imgs.classes,
            "counts": counts, "source": result.source, "seconds": result.seconds,
            "csv": str(out / "audit.csv"), "png": str(out / "audit.png"), "rows": rows,
            "ranking": ranking}   # every readable image, suspects first, each group by margin


def refuse_multilabel(data, columns, checkpoint=None, run=None):
    """Confident learning here ranks the one given label of each image against the others: a
    multi-label label file (read as training reads it), checkpoint or config is refused."""
    from ..data.multilabel import read_sets

    why = "audit's label check (confident learning) takes one label per image: audit single-label data"
    if checkpoint is not None:
        from ..model.checkpoint import load as load_checkpoint
        if load_checkpoint(checkpoint)[1].get("multilabel"):
            raise CnnError(f"--checkpoint {checkpoint} is multi-label (K sigmoid outputs): {why} with a "
                           "single-label checkpoint (softmax, or 1 sigmoid unit)")
    if run is not None and run.model.build(build_params=False).head == "multilabel":
        raise CnnError(f"--config {run.source}: the model ends in K sigmoid units (multi-label): {why} "
                       "with a config whose last layer is softmax")
    d = run.data if run is not None else None
    try:
        sets = is_label_file(data) and read_sets(data, columns, d.label_separator if d else "|",
                                                 d.head if d else "auto")
    except CnnError:     # not a well-formed multi-label file: read_table says what a label file needs
        sets = None
    if sets:
        how = ("a one-hot table" if sets.layout == "one-hot" else "data.head: multilabel"
               if d and d.head == "multilabel" else f"a label cell holds {d.label_separator if d else '|'!r}")
        raise CnnError(f"{data} is multi-label ({how}): {why}")


def _from_checkpoint(imgs, prints, ok, checkpoint, folds, seed, seconds):
    from ..engine.confident import audit_probabilities
    from .predict import load

    loaded = load(checkpoint)
    _has_features(loaded)
    t0 = time.perf_counter()
    decoded, bad = _decode(imgs, ok, loaded.shape, loaded.resize)
    ok, decoded = _drop_bad(imgs, prints, ok, decoded, bad)
    _need_images(imgs, ok, folds)       # before the feature pass, which takes seconds to minutes
    feats = features(loaded, decoded)
    seconds["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probs, l2, left = audit_probabilities(feats, imgs.labels[ok], len(imgs.classes), folds, seed)
    seconds["folds"] = time.perf_counter() - t0
    refit = f"; refitted without the first pass's {left} suspects" if left else ""
    source = (f"{folds}-fold softmax regression on {feats.shape[1]} penultimate features of {checkpoint} "
              f"(L2 {l2:g} by out-of-fold loss{refit})")
    return Audit(imgs, prints, ok, decoded, probs, feats, seconds, source)


def _drop_bad(imgs, prints, ok, decoded, bad):
    """Files the hash read but the model's decode could not: unreadable too."""
    if not bad:
        return ok, decoded
    from ..data.duplicates import Fingerprint
    for k, why in bad.items():
        prints[k] = Fingerprint(error=why)
    keep = np.array([k not in bad for k in ok])
    return ok[keep], decoded[keep]


def _need_images(imgs, ok, folds):
    present = np.bincount(imgs.labels[ok], minlength=len(imgs.classes))
    if (present == 0).any():
        lost = imgs.classes[int(np.flatnonzero(present == 0)[0])]
        raise CnnError(f"class {lost!r} has no readable images: fix or remove its folder, then audit again")
    if len(ok) < 2 * folds:
        raise CnnError(f"{len(ok)} readable images are too few for {folds} folds: give more images or fewer --folds")


def _from_trainings(imgs, prints, ok, config, overrides, folds, seed, out, seconds, progress=None):
    from .audit_folds import trained_out_of_fold

    t0 = time.perf_counter()
    _need_images(imgs, ok, folds)
    probs, decoded, ok = trained_out_of_fold(imgs, prints, ok, config, overrides, folds, seed, out, progress)
    seconds["trainings"] = time.perf_counter() - t0
    source = f"{folds} trainings from scratch with {config}, each scoring the fold it did not see"
    return Audit(imgs, prints, ok, decoded, probs, None, seconds, source)


def _label_rows(result):
    """-> (a row per label suspect; every readable image's path), both in confident.ranking's order."""
    from ..engine.confident import label_issues, ranking

    imgs, ok = result.images, result.ok
    suspect, suggested, score = label_issues(result.probs, imgs.labels[ok])
    ranked = ranking(result.probs, imgs.labels[ok])
    rows = [_row(imgs, ok[r], "label", imgs.classes[suggested[r]], score[r],
                 detail=f"p(given)={result.probs[r, imgs.labels[ok[r]]]:.3f} "
                        f"p(suggested)={result.probs[r, suggested[r]]:.3f}") for r in ranked if suspect[r]]
    return rows, [str(imgs.files[ok[r]]) for r in ranked]


def _rows(result, tiny):
    """-> (rows as dicts in the csv's order, {issue: count}, the label ranking of _label_rows)."""
    imgs, prints, ok = result.images, result.prints, result.ok
    rows, ranking = _label_rows(result)
    rows += _duplicate_rows(result)
    for k, p in enumerate(prints):
        if p.error is not None:
            rows.append(_row(imgs, k, "unreadable", "", 1.0, detail=p.error))
    side = tiny if tiny is not None else _tiny_side(result)
    for k in ok:
        w, h = prints[k].size
        if min(w, h) < side:
            rows.append(_row(imgs, k, "tiny", "", 1 - min(w, h) / side, detail=f"{w}x{h} pixels, under {side}"))
    rows += _imbalance_rows(imgs)
    counts = {issue: sum(r["issue"] == issue for r in rows) for issue in ORDER}
    return rows, counts, ranking


def _tiny_side(result):
    """Half the smaller of the model's input side and the median image's shorter side: an image
    under it is blown up more than 2x, and is small next to the others (64-pixel crops under a
    224-pixel network are not all tiny)."""
    if not len(result.ok):
        return 1
    median = float(np.median([min(result.prints[k].size) for k in result.ok]))
    return max(1, int(min(min(result.decoded.shape[1:3]), median) // 2))


def _row(imgs, k, issue, suggested, score, other="", detail=""):
    return {"path": str(imgs.files[k]), "issue": issue, "given": imgs.classes[imgs.labels[k]],
            "suggested": suggested, "score": float(score), "other": other, "split": imgs.splits[k],
            "detail": detail}


def _duplicate_rows(result):
    imgs = result.images
    feats = result.feats   # the readable images' features, in ok's order: the prints without an error
    rows = []
    for p in find_pairs(result.prints, feats):
        a, b = p.a, p.b
        where = imgs.splits[a] if imgs.splits[a] == imgs.splits[b] else f"{imgs.splits[a]}/{imgs.splits[b]}"
        what = ("same bytes" if p.match == "exact" else f"pHash {p.bits} bits apart"
                + ("" if p.cosine is None else f", feature cosine {p.cosine:.3f}"))
        score = 1.0 if p.match == "exact" else 1 - p.bits / 64
        rows.append(_row(imgs, b, "duplicate", imgs.classes[imgs.labels[a]], score, str(imgs.files[a]),
                         f"{p.match} copy ({what}) in {where}"))
    rows.sort(key=lambda r: -r["score"])
    return rows


def _imbalance_rows(imgs):
    counts = np.bincount(imgs.labels, minlength=len(imgs.classes))
    median = float(np.median(counts))
    rows = []
    for c in np.argsort(counts, kind="stable"):
        if counts[c] < SMALL_CLASS * median:
            rows.append({"path": "", "issue": "imbalance", "given": imgs.classes[c], "suggested": "",
                         "score": 1 - counts[c] / median, "other": "", "split": "",
                         "detail": f"{counts[c]} images; the median class has {median:g}"})
    return rows


def audit_csv(rows):
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(dict(r, score=f"{r['score']:.4f}"))
    return buf.getvalue()


def _write(out, rows, result, top):
    from ..viz.figure import save_png
    from ..viz.grids import draw_suspects

    out = output_folder(out)
    write_text_atomic(out / "audit.csv", audit_csv(rows), "audit")
    at = {int(k): r for r, k in enumerate(result.ok)}
    index = {str(p): k for k, p in enumerate(result.images.files)}
    shown = [r for r in rows if r["issue"] == "label"][:top]
    pictures = np.array([result.decoded[at[index[r["path"]]]] for r in shown]) if shown else \
        np.zeros((0, 1, 1, 1), np.uint8)
    captions = [f"{Path(r['path']).name[:16]}\n{r['given']} -> {r['suggested']}\nmargin {r['score']:.2f}"
                for r in shown]
    save_png(draw_suspects(pictures, captions, f"label suspects: {len(shown)} of "
                                               f"{sum(r['issue'] == 'label' for r in rows)} (given -> suggested)"),
             out / "audit.png", "audit gallery")
