""""None of these": `predict --reject auto|P` and `evaluate --unknown FOLDER`. An image is unknown when
its score (engine/calibration.py: the calibrated max-probability, or minus the distance to the
nearest class centre) is under a threshold: P itself, or with 'auto' the threshold that rejects the
share --reject-rate of the validation images the checkpoint was calibrated on."""

import math

import numpy as np

from ..engine import calibration as cal
from ..errors import CnnError
from ..model.checkpoint import calibration
from ..model.features import logits_and_features

UNKNOWN = "unknown"


def parse_reject(text):
    """--reject's value -> 'auto' or a probability in (0, 1)."""
    if str(text).lower() == "auto":
        return "auto"
    try:
        p = float(text)
    except ValueError:
        p = math.nan
    if not 0 < p < 1:
        raise CnnError(f"--reject {text}: give auto (a threshold picked on validation images) or a "
                       "probability between 0 and 1, e.g. --reject 0.6")
    return p


def check_rate(rate):
    if not 0 < rate < 1:
        raise CnnError(f"--reject-rate {rate:g}: give the share of known images you accept to reject, "
                       "between 0 and 1 (e.g. 0.05)")


def rule(ckpt_path, reject, rate):
    """-> (score name, threshold, calibration meta, stored arrays): how images are judged unknown."""
    reject = parse_reject(reject)
    check_rate(rate)
    meta, arrays = calibration(ckpt_path)
    if reject != "auto":
        return "probability", cal.log_odds(reject), meta, arrays
    name = meta.get("unknown_score")
    if name not in cal.SCORES or name not in arrays:
        raise CnnError(f"{ckpt_path} holds no calibration to pick a threshold from: run cnncli calibrate "
                       f"{ckpt_path} VAL_DATA first, or give a fixed probability (--reject 0.6)")
    return name, cal.threshold_for(arrays[name], rate), meta, arrays


def scores(loaded, images, arrays, temperature):
    """uint8 images -> {score name: (N,) score}, in one inference pass (no TTA)."""
    if not len(images):
        return {k: np.zeros(0) for k in cal.SCORES}
    logits, feats = logits_and_features(loaded.model, loaded.mean, loaded.std, np.asarray(images))
    out = {"probability": cal.probability_score(logits, loaded.model.head, temperature)}
    if "centres" in arrays:
        out["distance"] = cal.distance_score(feats, {k: arrays[k] for k in ("shift", "scale", "centres")})
    return out


def check_tta(ckpt_path, name, tta):
    """The distance score is taken on one view's features: refuse it beside TTA's averaged probabilities."""
    if tta and name == "distance":
        raise CnnError(f"--reject auto --tta: {ckpt_path}'s unknown score is the feature distance, taken on the "
                       "image alone; drop --tta, or give a fixed probability (--reject 0.6) to judge the TTA average")


def decide(ckpt_path, loaded, images, probs, reject, rate, tta=False):
    """-> each image's class name (the top of probs), or 'unknown' when its score is under the
    threshold. The probability score is taken on probs, the printed (TTA-averaged) probabilities."""
    name, threshold, meta, arrays = rule(ckpt_path, reject, rate)
    check_tta(ckpt_path, name, tta)
    if name == "probability":
        s = cal.probability_score_of(probs)
    else:
        s = scores(loaded, images, arrays, meta.get("temperature", 1.0))[name]
    return [UNKNOWN if v < threshold else loaded.classes[int(np.argmax(p))] for v, p in zip(s, probs)]
