"""`cnncli evaluate`: a labelled folder scored by a checkpoint (score_folder, summarize_scores)
and, with --out DIR, the evaluation as files: confusion.csv, per_class.csv, confusion.png (counts
and row-normalised) and mistakes.png (the most confident mistakes)."""

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.cache import describe_conversions
from ..errors import CnnError
from ..files import output_folder, write_text_atomic
from .predict import Loaded, _scores, describe_views, label_columns, load, tta_views

FILES = ("confusion.csv", "per_class.csv", "confusion.png", "mistakes.png")


def confusion_csv(report):
    """Rows: the true class; columns: the predicted class; a header row and column of names."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true \\ predicted"] + report["classes"])
    for name, row in zip(report["classes"], report["confusion"]):
        w.writerow([name] + row)
    return buf.getvalue()


def per_class_csv(report):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["class", "precision", "recall", "f1", "support"])
    for c in report["per_class"]:
        w.writerow([c["class"], f"{c['precision']:.6f}", f"{c['recall']:.6f}", f"{c['f1']:.6f}", c["support"]])
    return buf.getvalue()


def write_evaluation(scored, report, out):
    """Scored (score_folder) and its summary -> the four files in out. -> their paths."""
    if report.get("multilabel"):
        from .multilabel import write_label_evaluation
        return write_label_evaluation(report, out)
    from ..viz.confusion import draw_confusion
    from ..viz.figure import save_png
    from ..viz.grids import draw_mistakes

    out = output_folder(out)
    write_text_atomic(out / "confusion.csv", confusion_csv(report), "confusion matrix")
    write_text_atomic(out / "per_class.csv", per_class_csv(report), "per-class scores")
    name = Path(report["data"]).name or report["data"]
    save_png(draw_confusion(report["confusion"], report["classes"],
                            f"confusion matrix: {report['images']} images in {name}, accuracy "
                            f"{report['accuracy']:.1%}"), out / "confusion.png", "confusion matrix")
    save_png(draw_mistakes(scored.images, scored.labels, scored.probs, report["classes"]),
             out / "mistakes.png", "mistakes")
    return [out / f for f in FILES]


@dataclass
class Scored:
    """A labelled folder scored by a checkpoint: what `evaluate` counts and its pictures show."""
    loaded: Loaded
    data_dir: str
    images: np.ndarray     # (N, h, w, c) uint8, as the model saw them (before normalising)
    labels: np.ndarray     # (N,) true class indices
    files: list            # the N image paths
    probs: np.ndarray      # (N, K) class probabilities
    loss: float
    skipped: list          # [(path, reason)]
    converted: str = None  # one line on what decoding changed, or None
    tta: str = None        # the views averaged (evaluate --tta), or None


def score_folder(ckpt_path, data_dir, cache_dir=None, workers=None, batch_size=64, select=None, tta=False,
                 split=None):
    """Every readable image of a labelled folder (train layout) or label file through the checkpoint
    -> Scored. select(labels) -> indices: score only those images (a held-out split of a training
    folder). tta: probabilities averaged over tta_views (the loss is then that of the averages).
    split: only a label file's rows of that split ('test')."""
    from ..data.cache import decode_folder
    from ..data.labels import list_data

    loaded = load(ckpt_path)
    if loaded.model.head == "multilabel":
        from .multilabel import score_labels
        return score_labels(loaded, data_dir, cache_dir, workers, batch_size, tta, split, select)
    listing, _ = list_data(data_dir, loaded.classes, "evaluate", label_columns(loaded.meta), split)
    dec = decode_folder(listing, loaded.shape, loaded.resize, cache_dir, workers)
    skipped = listing.missing + dec.skipped
    images, labels, files = dec.images, dec.labels, dec.files
    if select is not None:
        keep = np.asarray(select(labels), np.int64)
        images, labels, files = images[keep], labels[keep], [files[i] for i in keep]
    if len(labels) == 0:
        raise CnnError(f"{data_dir}: no readable images to evaluate")
    probs, loss = _scores(loaded, images, labels, batch_size, tta)
    return Scored(loaded, str(data_dir), images, labels, files, probs, loss, skipped,
                  describe_conversions(dec.converted, loaded.shape),
                  describe_views(tta_views(loaded)) if tta else None)


def evaluate(ckpt_path, data_dir, top_k=5, cache_dir=None, workers=None, batch_size=64, tta=False):
    """Score a labelled folder (train layout) -> loss, accuracy, top-k accuracy, per-class
    precision / recall / F1 / support, and the confusion matrix (rows: true class). The loss is
    the one training records as val_loss (plain cross-entropy, no smoothing or class weights).
    tta: probabilities averaged over tta_views (the loss is then that of the averages). ece and nll
    use the checkpoint's calibration temperature (add_calibration)."""
    scored = score_folder(ckpt_path, data_dir, cache_dir, workers, batch_size, tta=tta)
    return add_calibration(summarize_scores(scored, ckpt_path, top_k), scored)


def calibration_summary(scored, batch_size=64):
    """Scored -> ({'temperature', 'ece': [before, after], 'nll': [before, after], 'bins': [before,
    after]}, the probabilities with the checkpoint's temperature). before: T = 1; ECE in 15 bins."""
    from ..engine.calibration import reliability
    from ..model.checkpoint import temperature

    t = temperature(scored.loaded.meta)
    probs, loss = scored.probs, scored.loss
    if t != 1.0:
        probs, loss = _scores(scored.loaded, scored.images, scored.labels, batch_size, scored.tta is not None, t)
    (e0, b0), (e1, b1) = reliability(scored.probs, scored.labels), reliability(probs, scored.labels)
    return {"temperature": t, "ece": [e0, e1], "nll": [scored.loss, loss], "bins": [b0, b1],
            "fitted_on": (scored.loaded.meta.get("calibration") or {}).get("data")}, probs


def add_calibration(report, scored, unknown=None, rate=0.05):
    """report (summarize_scores) += 'ece' and 'nll' (with the temperature), 'calibration', and with
    unknown (a folder of classes never trained on) 'unknown' and 'unknown_auroc' -> report."""
    if scored.loaded.model.head == "multilabel":
        if unknown is not None:
            raise CnnError("--unknown scores single-label models; a multi-label model says 'none' when no "
                           "label is over its threshold")
        return report
    cal, _ = calibration_summary(scored)
    report.update(ece=cal["ece"][1], nll=cal["nll"][1], calibration=cal)
    if unknown is not None:
        from .unknown_eval import unknown_report
        report["unknown"] = unknown_report(report["checkpoint"], scored, unknown, rate)
        report["unknown_auroc"] = report["unknown"]["unknown_auroc"]
    return report


def write_reliability(report, out):
    """out/reliability.png from add_calibration's report -> its path."""
    from ..viz.figure import save_png
    from ..viz.reliability import draw_reliability

    name = Path(report["data"]).name or report["data"]
    save_png(draw_reliability(report["calibration"], f"reliability: {report['images']} images in {name}"),
             Path(out) / "reliability.png", "reliability diagram")
    return Path(out) / "reliability.png"


def summarize_scores(scored, ckpt_path, top_k=5):
    """Scored -> the counts `evaluate` prints (see evaluate); a multi-label checkpoint's: multilabel.py."""
    if scored.loaded.model.head == "multilabel":
        from .multilabel import summarize_labels
        return summarize_labels(scored, ckpt_path)
    classes, labels, probs = scored.loaded.classes, scored.labels, scored.probs
    k = len(classes)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    kk = min(top_k, k)
    topk = np.argsort(-probs, axis=1, kind="stable")[:, :kk]
    per_class = []
    for c, name in enumerate(classes):
        tp = int(confusion[c, c])
        support, predicted = int(confusion[c].sum()), int(confusion[:, c].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return {"checkpoint": str(ckpt_path), "data": scored.data_dir, "images": int(len(labels)),
            "loss": scored.loss, "accuracy": float((pred == labels).mean()),
            "top_k": kk, "top_k_accuracy": float((topk == labels[:, None]).any(axis=1).mean()),
            "classes": classes, "per_class": per_class, "confusion": confusion.tolist(),
            "skipped": [{"path": p, "reason": r} for p, r in scored.skipped],
            "converted": scored.converted, "tta": scored.tta}
