"""`evaluate --unknown FOLDER`: how well the unknown scores (commands/unknown.py) tell images of
classes the model never saw from the labelled, known images being evaluated."""

import numpy as np

from ..engine import calibration as cal
from ..errors import CnnError
from .predict import collect
from .unknown import rule, scores


def unknown_report(ckpt_path, scored, folder, rate=0.05):
    """Known images (Scored) against the images under folder (classes the model never saw) ->
    {'unknown_auroc': {score: AUROC}, 'score', 'threshold', 'caught' (share of unknowns rejected),
    'false_rejection' (share of known images rejected), ...}."""
    from ..data.cache import decode_files

    loaded = scored.loaded
    name, threshold, meta, arrays = rule(ckpt_path, "auto", rate)
    files, missing = collect([str(folder)])
    images = [item[0] for _, item in decode_files(files, loaded.shape, loaded.resize, None, None)
              if not isinstance(item, str)]
    if not images:
        raise CnnError(f"--unknown {folder}: no readable images in it")
    t = meta.get("temperature", 1.0)
    known, unknown = scores(loaded, scored.images, arrays, t), scores(loaded, images, arrays, t)
    return {"folder": str(folder), "images": len(images), "skipped": len(files) - len(images) + len(missing),
            "unknown_auroc": {k: cal.auroc(known[k], unknown[k]) for k in cal.SCORES},
            "score": name, "rate": rate, "threshold": threshold,
            "caught": float(np.mean(unknown[name] < threshold)),
            "false_rejection": float(np.mean(known[name] < threshold))}
