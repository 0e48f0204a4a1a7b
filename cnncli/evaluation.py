"""`cnncli evaluate --out DIR`: the evaluation as files: confusion.csv, per_class.csv,
confusion.png (counts and row-normalised) and mistakes.png (the most confident mistakes)."""

import csv
import io
from pathlib import Path

from .errors import CnnError
from .files import write_text_atomic

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
    """Scored (predict.score_folder) and its summary -> the four files in out. -> their paths."""
    from .viz.confusion import draw_confusion
    from .viz.figure import save_png
    from .viz.grids import draw_mistakes

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnError(f"cannot write to {out} ({e.strerror}): pick a writable folder with --out") from None
    write_text_atomic(out / "confusion.csv", confusion_csv(report), "confusion matrix")
    write_text_atomic(out / "per_class.csv", per_class_csv(report), "per-class scores")
    name = Path(report["data"]).name or report["data"]
    save_png(draw_confusion(report["confusion"], report["classes"],
                            f"confusion matrix: {report['images']} images in {name}, accuracy "
                            f"{report['accuracy']:.1%}"), out / "confusion.png", "confusion matrix")
    save_png(draw_mistakes(scored.images, scored.labels, scored.probs, report["classes"]),
             out / "mistakes.png", "mistakes")
    return [out / f for f in FILES]
