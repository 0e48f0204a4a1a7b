"""Multi-label metrics over scores S (N, K) in [0, 1] and 0/1 targets T (N, K).

AP of one label: the images sorted by score, cut after each distinct score value (tied scores
enter together), AP = sum_n (R_n - R_{n-1}) P_n (scikit-learn's average_precision_score).
mAP: the mean AP over the labels with at least one positive; a label without one has no AP and
is left out (and named). Exact match: every label of an image right; Hamming accuracy: the share
of (image, label) cells right. A prediction is positive where S >= its label's threshold.
"""

import numpy as np

DEFAULT_THRESHOLD = 0.5


def _ranked(scores, targets):
    """One label's images by falling score -> (sorted scores, true positives and images kept at each
    cut, the cuts: the last position of each tie group, positives), or None without a positive."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(targets, np.float64) >= 0.5
    positives = int(truth.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]      # tied scores are kept or cut together
    return s, np.cumsum(truth[order]), np.arange(1, len(s) + 1), last, positives


def average_precision(scores, targets):
    """scores (N,), targets (N,) 0/1 -> AP, or None when there is no positive."""
    ranked = _ranked(scores, targets)
    if ranked is None:
        return None
    _, tp, seen, last, positives = ranked
    precision, recall = tp[last] / seen[last], tp[last] / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_label_ap(scores, targets):
    """-> [AP or None] per label."""
    return [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]


def mean_ap(scores, targets):
    """-> (mAP over the labels with a positive or None when none has one, [indices left out])."""
    aps = per_label_ap(scores, targets)
    kept = [a for a in aps if a is not None]
    return (float(np.mean(kept)) if kept else None), [k for k, a in enumerate(aps) if a is None]


def predicted(scores, thresholds):
    """(N, K) scores, K thresholds -> (N, K) bool: the labels over their threshold."""
    return np.asarray(scores) >= np.asarray(thresholds, np.float64)[None, :]


def _prf(pred, truth):
    tp = int((pred & truth).sum())
    n_pred, n_true = int(pred.sum()), int(truth.sum())
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def summarize(scores, targets, classes, thresholds=None):
    """-> mAP, exact-match and Hamming accuracy, and per label precision / recall / F1 / AP /
    support / threshold (thresholds default to 0.5)."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(targets) >= 0.5
    k = scores.shape[1]
    thresholds = [DEFAULT_THRESHOLD] * k if thresholds is None else list(thresholds)
    pred = predicted(scores, thresholds)
    aps = per_label_ap(scores, truth)
    per_label = []
    for j, name in enumerate(classes):
        p, r, f1 = _prf(pred[:, j], truth[:, j])
        per_label.append({"label": name, "precision": p, "recall": r, "f1": f1, "ap": aps[j],
                          "support": int(truth[:, j].sum()), "threshold": float(thresholds[j])})
    mAP, left_out = mean_ap(scores, truth)
    return {"map": mAP, "map_labels": k - len(left_out), "no_positive": [classes[j] for j in left_out],
            "exact_match": float((pred == truth).all(axis=1).mean()) if len(truth) else 0.0,
            "hamming_accuracy": float((pred == truth).mean()) if truth.size else 0.0,
            "per_label": per_label}


def best_threshold(scores, targets):
    """The threshold of one label that maximises F1 on (scores, targets) (a prediction is positive
    at score >= threshold): halfway between the lowest score the best cut keeps and the next score
    below it (0 below the lowest), so it does not sit on a validation image's score; the highest
    cut on a tie; 0.5 without a positive."""
    ranked = _ranked(scores, targets)
    if ranked is None:
        return DEFAULT_THRESHOLD
    s, tp, seen, last, positives = ranked
    f1 = 2 * tp[last] / (seen[last] + positives)                # 2 TP / (predicted + true)
    best = int(np.argmax(f1))                                   # the first maximum: the highest threshold
    cut = last[best]
    below = s[cut + 1] if cut + 1 < len(s) else 0.0
    return float((s[cut] + below) / 2)


def tune_thresholds(scores, targets):
    """-> one threshold per label maximising its F1 (best_threshold)."""
    return [best_threshold(scores[:, k], targets[:, k]) for k in range(np.asarray(scores).shape[1])]


def present_labels(classes, thresholds, scores):
    """(N, K) scores -> per image {"labels": [names over their threshold], "scores": {name: score}}."""
    on = predicted(scores, thresholds)
    return [{"labels": [c for c, yes in zip(classes, row) if yes],
             "scores": {c: float(s) for c, s in zip(classes, p)}} for p, row in zip(scores, on)]
