"""Calibrated confidence and "none of these": pure array math, no files.

Temperature scaling (Guo et al. 2017): p = softmax(z / T), or sigmoid(z / T) for a one-logit head;
T > 0 minimises the negative log-likelihood NLL(T) = -mean_i log p_T(y_i | z_i) on validation data.
NLL is convex in 1 / T, so it has one minimum along log T: a golden-section search finds it.
Expected calibration error over B equal-width bins of the max-probability c_i (bin b: (b/B, (b+1)/B],
bin 0 also takes c = 0):  ECE = sum_b |S_b| / N * |acc(S_b) - mean conf(S_b)|.
Unknown scores are "higher = more like the training classes": the calibrated max-probability (as
log-odds), and minus the distance to the nearest class centre of the penultimate features, standardised per feature.
"""

import math

import numpy as np

from .losses import Loss

BINS = 15
T_RANGE = (0.05, 20.0)   # the search's bounds on T
SCORES = ("probability", "distance")


def log_probs(logits, head, temperature=1.0):
    """(N, K) logits -> (N, n_classes) float64 log-probabilities of softmax(z / T) (sigmoid head: [1-p, p])."""
    z = np.asarray(logits, np.float64) / float(temperature)
    return Loss(head).log_probabilities(z)


def nll(logits, labels, head, temperature=1.0):
    """Mean negative log-likelihood of the labels under softmax(z / T)."""
    lp = log_probs(logits, head, temperature)
    return float(-lp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits, labels, head, steps=80):
    """The T in T_RANGE that minimises nll (golden-section search over log T) -> T."""
    lo, hi = math.log(T_RANGE[0]), math.log(T_RANGE[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = (nll(logits, labels, head, math.exp(v)) for v in (a, b))
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, labels, head, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, labels, head, math.exp(b))
    return math.exp((lo + hi) / 2)


def reliability(probs, labels, bins=BINS):
    """(N, K) probabilities, (N,) labels -> (ECE, [{lo, hi, count, accuracy, confidence}] per bin)."""
    probs = np.asarray(probs, np.float64)
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)   # (b/B, (b+1)/B] -> b
    rows, total = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        acc = float(right[inside].mean()) if n else 0.0
        mean_conf = float(conf[inside].mean()) if n else 0.0
        total += n / len(conf) * abs(acc - mean_conf)
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n, "accuracy": acc, "confidence": mean_conf})
    return total, rows


def ece(probs, labels, bins=BINS):
    return reliability(probs, labels, bins)[0]


# --- "none of these" ---
def fit_centres(features, labels, n_classes):
    """(N, D) penultimate features -> {'shift', 'scale' (D,), 'centres' (K, D)}: features are
    standardised, f' = (f - shift) / scale, and each class's centre is the mean of its f'."""
    f = np.asarray(features, np.float64)
    shift, scale = f.mean(axis=0), f.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    g = (f - shift) / scale
    centres = np.full((n_classes, f.shape[1]), np.nan)   # a class without images has no centre
    for c in range(n_classes):
        if np.any(labels == c):
            centres[c] = g[labels == c].mean(axis=0)
    return {"shift": shift, "scale": scale, "centres": centres}


def _sq_distances(features, fit):
    """(N, D) -> (N, K) squared distances to each class centre, in the standardised space, / D."""
    g = (np.asarray(features, np.float64) - fit["shift"]) / fit["scale"]
    c = fit["centres"]
    known = ~np.isnan(c).any(axis=1)
    c = np.where(known[:, None], c, 0.0)
    d = (g * g).sum(axis=1)[:, None] - 2 * g @ c.T + (c * c).sum(axis=1)[None, :]
    return np.where(known[None, :], np.maximum(d, 0.0), np.inf) / g.shape[1]


def distance_score(features, fit, exclude=None):
    """-> (N,) minus the distance to the nearest centre (higher: more like a training class).
    exclude: a class index whose centre is left out (to score its images as if unseen)."""
    d = _sq_distances(features, fit)
    if exclude is not None:
        d[:, exclude] = np.inf
    return -np.sqrt(d.min(axis=1))


def held_out_distance_score(features, labels, fit):
    """distance_score with each image's own class centre computed without it (leave-one-out), so
    that a threshold picked on these scores holds on images the centres never saw."""
    g = (np.asarray(features, np.float64) - fit["shift"]) / fit["scale"]
    d = _sq_distances(features, fit) * g.shape[1]
    counts = np.bincount(labels, minlength=len(fit["centres"])).astype(np.float64)
    n = counts[labels]
    own = np.arange(len(labels)), labels
    # |g - (n c - g) / (n - 1)|^2 = (n / (n - 1))^2 |g - c|^2
    d[own] = np.where(n > 1, d[own] * (n / np.maximum(n - 1, 1)) ** 2, np.inf)
    return -np.sqrt(d.min(axis=1) / g.shape[1])


def probability_score(logits, head, temperature=1.0, exclude=None):
    """-> (N,) the log-odds of the calibrated max-probability, log p_max - log(1 - p_max): ordered as
    p_max, without p_max's float rounding to 1 near certainty. exclude: that class is taken out and
    the rest renormalised (a class played as unseen)."""
    lp = log_probs(logits, head, temperature)
    if exclude is not None:
        lp = np.delete(lp, exclude, axis=1)
        lp = lp - _logsumexp(lp)[:, None]
    top = lp.argmax(axis=1)
    rest = lp.copy()
    rest[np.arange(len(lp)), top] = -np.inf
    return lp[np.arange(len(lp)), top] - _logsumexp(rest)


def probability_score_of(probs):
    """Printed probabilities (N, K), TTA averages included -> (N,) log p_max - log(sum of the rest):
    probability_score's order, the rest summed (not 1 - p_max) so p_max rounding to 1 loses nothing."""
    p = np.asarray(probs, np.float64)
    rows, top = np.arange(len(p)), p.argmax(axis=1)
    rest = p.copy()
    rest[rows, top] = 0
    with np.errstate(divide="ignore"):
        return np.log(p[rows, top]) - np.log(rest.sum(axis=1))


def log_odds(p):
    """A probability threshold P -> the probability_score threshold: p_max < P <=> score < log(P / (1 - P))."""
    return math.log(p / (1 - p))


def _logsumexp(a):
    top = a.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return top + np.log(np.exp(a - top[:, None]).sum(axis=1))


def auroc(known, unknown):
    """P(score of a known image > score of an unknown one), ties counting half (Mann-Whitney U)."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return float("nan")
    both = np.concatenate([known, unknown])
    _, at, count = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(count) - (count - 1) / 2)[at]        # 1-based ranks, averaged over ties
    u = ranks[:len(known)].sum() - len(known) * (len(known) + 1) / 2
    return float(u / (len(known) * len(unknown)))


def class_out_auroc(logits, head, temperature, features, labels, fit):
    """Each score's mean AUROC over the classes, each class in turn played as the unknown one
    (its probability or centre removed) against the others' images -> {score name: AUROC}."""
    labels = np.asarray(labels)
    out = {"probability": [], "distance": []}
    for c in range(len(fit["centres"])):
        mine = labels == c
        if not mine.any() or mine.all():
            continue
        p = probability_score(logits, head, temperature, c)
        out["probability"].append(auroc(p[~mine], p[mine]))
        d = distance_score(features, fit, c)
        out["distance"].append(auroc(d[~mine], d[mine]))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in out.items()}


def threshold_for(scores, rate):
    """The threshold t that rejects (score < t) the share `rate` of these known images' scores."""
    s = np.sort(np.asarray(scores, np.float64))
    k = int(math.floor(rate * len(s)))
    if k <= 0:
        return float(s[0]) if len(s) else 0.0
    return float((s[k - 1] + s[k]) / 2) if k < len(s) else float(s[-1]) + 1.0
