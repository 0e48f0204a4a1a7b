"""Multi-label checkpoints (K sigmoid outputs) in `evaluate` and `predict`: a label is present
where its score reaches the checkpoint's threshold for it (meta.multilabel.thresholds, tuned on
validation at the end of training; 0.5 where none was tuned)."""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import describe_conversions
from ..errors import CnnError
from ..files import output_folder, write_text_atomic
from ..model.checkpoint import thresholds_of
from .predict import Loaded, _scores, describe_views, label_columns, tta_views


def thresholds(loaded):
    return thresholds_of(loaded.meta, len(loaded.classes))


@dataclass
class ScoredLabels:
    """A multi-label file scored by a checkpoint."""
    loaded: Loaded
    data: str
    images: np.ndarray     # (N, h, w, c) uint8
    targets: np.ndarray    # (N, K) 0/1
    files: list
    probs: np.ndarray      # (N, K) sigmoid scores
    loss: float
    skipped: list
    converted: str = None
    tta: str = None


def score_labels(loaded, data, cache_dir=None, workers=None, batch_size=64, tta=False, split=None, select=None):
    """Every readable image of a label file through a multi-label checkpoint -> ScoredLabels.
    Its rows may carry one label or several (the checkpoint's separator), or be one-hot.
    select(first labels) -> indices: only those images (the share data.val_split held out)."""
    from ..data.cache import decode_folder
    from ..data.labels import is_label_file
    from ..data.multilabel import read_sets, to_listing

    if not is_label_file(data):
        raise CnnError(f"{data}: a multi-label checkpoint is evaluated on a label file (.csv, .tsv, .jsonl) "
                       "with path and label columns (labels joined by '|') or one-hot columns, not a folder")
    separator = (loaded.meta.get("multilabel") or {}).get("separator", "|")
    sets = read_sets(data, label_columns(loaded.meta), separator, "multilabel")
    if sets is None:
        raise CnnError(f"{data}: no path column or label columns to read (see `cnncli evaluate --help`)")
    if split is not None and not sets.has_split:
        raise CnnError(f"{data} has no split column: the {split} rows need one (see `cnncli split`)")
    ml = to_listing(sets, loaded.classes, split, role="evaluate")
    dec = decode_folder(ml.listing, loaded.shape, loaded.resize, cache_dir, workers)
    if len(dec.files) == 0:
        raise CnnError(f"{data}: no readable images to evaluate")
    images, files = dec.images, list(dec.files)
    if select is not None:
        keep = np.asarray(select(dec.labels), np.int64)
        images, files = images[keep], [files[i] for i in keep]
    targets = ml.targets(files)
    probs, loss = _scores(loaded, images, targets, batch_size, tta)
    return ScoredLabels(loaded, str(data), images, targets, files, probs, loss,
                        ml.listing.missing + dec.skipped, describe_conversions(dec.converted, loaded.shape),
                        describe_views(tta_views(loaded)) if tta else None)


def summarize_labels(scored, ckpt_path):
    """ScoredLabels -> what `evaluate` prints for a multi-label checkpoint (`map` and the rest:
    engine/multilabel_metrics.summarize), at the checkpoint's thresholds."""
    from ..engine.multilabel_metrics import summarize

    rep = summarize(scored.probs, scored.targets, scored.loaded.classes, thresholds(scored.loaded))
    return {"checkpoint": str(ckpt_path), "data": scored.data, "images": int(len(scored.targets)),
            "multilabel": True, "loss": scored.loss, "classes": scored.loaded.classes, **rep,
            "skipped": [{"path": p, "reason": r} for p, r in scored.skipped],
            "converted": scored.converted, "tta": scored.tta}


def per_label_csv(report):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "precision", "recall", "f1", "ap", "support", "threshold"])
    for c in report["per_label"]:
        w.writerow([c["label"], f"{c['precision']:.6f}", f"{c['recall']:.6f}", f"{c['f1']:.6f}",
                    "" if c["ap"] is None else f"{c['ap']:.6f}", c["support"], f"{c['threshold']:.6f}"])
    return buf.getvalue()


def write_label_evaluation(report, out):
    """per_label.csv and per_label.png (AP and F1 bars) into out -> their paths."""
    from ..viz.figure import save_png
    from ..viz.per_label import draw_per_label

    out = output_folder(out)
    write_text_atomic(out / "per_label.csv", per_label_csv(report), "per-label scores")
    m = "n/a" if report["map"] is None else f"{report['map']:.3f}"
    save_png(draw_per_label(report["per_label"], f"{report['images']} images in {Path(report['data']).name}: mAP {m}"),
             out / "per_label.png", "per-label scores")
    return [out / "per_label.csv", out / "per_label.png"]
