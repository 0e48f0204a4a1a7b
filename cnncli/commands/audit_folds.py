"""`cnncli audit --config`: out-of-fold probabilities from k trainings from scratch. Fold f's
training is `cnncli train CONFIG` on a label file of the other folds (OUT/folds/f/rows.csv, its
held-out rows marked val); its last.npz then scores the held-out images."""

import csv
import io
from pathlib import Path

import numpy as np

from ..engine.confident import stratified_folds
from ..errors import CnnError
from ..files import write_text_atomic


def fold_rows(imgs, ok, fold, f):
    """The label file of fold f: every readable image, train unless in fold f (val)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label", "split"])
    for r, k in enumerate(ok):
        w.writerow([str(Path(imgs.files[k]).resolve()), imgs.classes[imgs.labels[k]],
                    "val" if fold[r] == f else "train"])
    return buf.getvalue()


def trained_out_of_fold(imgs, prints, ok, config, overrides, folds, seed, out, progress=None):
    """-> (probabilities (len(ok), K) out-of-fold, decoded uint8 images of ok, ok) after k trainings.
    progress(f, k) is called as fold f's training starts."""
    from ..engine.progress import QuietReporter
    from .evaluate import score_folder
    from .train import train

    fold = stratified_folds(imgs.labels[ok], folds, seed)
    probs = np.zeros((len(ok), len(imgs.classes)))
    decoded = None
    where = {str(Path(imgs.files[k]).resolve()): r for r, k in enumerate(ok)}
    for f in range(folds):
        if progress:
            progress(f, folds)
        run = Path(out) / "folds" / str(f)
        run.mkdir(parents=True, exist_ok=True)
        rows = run / "rows.csv"
        write_text_atomic(rows, fold_rows(imgs, ok, fold, f), "fold rows")
        sets = [*overrides, f"data.train={rows}", f"data.val={rows}", f"output={run / 'run'}",
                "data.columns={path: path, label: label, split: split}"]
        train(config, sets, force=True, reporter=QuietReporter())
        scored = score_folder(run / "run" / "last.npz", rows, split="val")
        if decoded is None:
            decoded = np.zeros((len(ok), *scored.images.shape[1:]), np.uint8)
        cols = [imgs.classes.index(c) for c in scored.loaded.classes]   # the fold model's classes -> ours
        for i, path in enumerate(scored.files):
            r = where[str(Path(path).resolve())]
            decoded[r] = scored.images[i]
            probs[r, cols] = scored.probs[i]
        if scored.skipped:
            path, why = scored.skipped[0]
            raise CnnError(f"{path}: {why}: the config's decode cannot read it; fix or remove it and audit again")
    return probs, decoded, ok
