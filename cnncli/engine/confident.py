"""Confident learning (Northcutt, Jiang and Chuang, JAIR 2021): which given labels are probably wrong,
from out-of-fold predicted probabilities.

  t_j      = mean of p_j(x) over the images x labelled j            one threshold per class
  suspect  : p_y(x) < t_y and p_j(x) >= t_j for some j != y         (y: the given label)
  suggested= argmax p_j(x) over those j
  score    = max_{j != y} p_j(x) - p_y(x)                           the margin, in [-1, 1]

Out-of-fold probabilities come from k stratified folds: each image is scored by a model that never
saw it. The model here is a softmax regression on fixed features (fit_softmax), in numpy.
"""

import numpy as np

from ..errors import CnnError


def thresholds(probs, labels, n_classes):
    """(N, K) probabilities, (N,) given labels -> (K,) t_j = mean p_j over the images labelled j
    (a class without images gets 1.0: nothing is confidently it)."""
    t = np.ones(n_classes)
    for j in range(n_classes):
        mine = labels == j
        if mine.any():
            t[j] = float(probs[mine, j].astype(np.float64).mean())
    return t


def label_issues(probs, labels):
    """-> (suspect (N,) bool, suggested (N,) class index, score (N,) margin): see the module's rule.
    suggested is the most probable other class for images that are not suspects."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    n, k = probs.shape
    t = thresholds(probs, labels, k)
    rows = np.arange(n)
    given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    above = (others >= t[None, :])                      # another class above its own threshold
    suspect = (given < t[labels]) & above.any(axis=1)
    confident = np.where(above, others, -np.inf).argmax(axis=1)
    best_other = others.argmax(axis=1)
    suggested = np.where(suspect, confident, best_other)
    score = others.max(axis=1) - given
    return suspect, suggested, score


def stratified_folds(labels, k, seed=0):
    """(N,) labels -> (N,) fold index in 0..k-1, each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng([seed, 27])
    fold = np.empty(len(labels), np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


def _standardise(train, test):
    mu = train.mean(axis=0)
    sd = train.std(axis=0) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(x, labels, n_classes, l2=1e-2, steps=300):
    """Softmax regression by Nesterov-accelerated gradient descent on
    L = mean_i -log softmax(x_i W + b)[y_i] + l2/2 |W|^2, step 1/L_max with
    L_max = |x|_2^2 / (2N) + l2 (a bound on the Hessian). -> (W (D, K), b (K,))."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    y = np.zeros((n, n_classes))
    y[np.arange(n), labels] = 1.0
    xb = np.hstack([x, np.ones((n, 1))])
    lip = np.linalg.norm(xb, 2) ** 2 / (2 * n) + l2
    step = 1.0 / lip
    w = np.zeros((d + 1, n_classes))
    v, t = w.copy(), 1.0
    reg = np.ones((d + 1, 1))
    reg[-1] = 0.0                                      # the bias is not shrunk
    for _ in range(steps):
        grad = xb.T @ (_softmax(xb @ v) - y) / n + l2 * reg * v
        w_next = v - step * grad
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = w_next + (t - 1) / t_next * (w_next - w)
        w, t = w_next, t_next
    return w[:-1], w[-1]


def predict_softmax(x, wb):
    w, b = wb
    return _softmax(np.asarray(x, np.float64) @ w + b)


def out_of_fold(features, labels, n_classes, k=5, seed=0, l2=1e-2, steps=300):
    """(N, D) features -> (N, K) probabilities, each from a softmax regression fitted on the other
    k-1 folds (features standardised on those folds)."""
    labels = np.asarray(labels, np.int64)
    if k < 2:
        raise CnnError(f"--folds {k}: confident learning needs at least 2 folds")
    if len(labels) < 2 * k:
        raise CnnError(f"{len(labels)} readable images are too few for {k} folds: give at least {2 * k}, "
                       "or fewer --folds")
    fold = stratified_folds(labels, k, seed)
    probs = np.zeros((len(labels), n_classes))
    for f in range(k):
        held = fold == f
        xtr, xte = _standardise(features[~held], features[held])
        wb = fit_softmax(xtr, labels[~held], n_classes, l2, steps)
        probs[held] = predict_softmax(xte, wb)
    return probs


def in_sample_loss(features, labels, n_classes, l2=1e-2, steps=300):
    """The baseline: -log p_y from one softmax regression fitted on every image (the trained model's loss)."""
    labels = np.asarray(labels, np.int64)
    x, _ = _standardise(features, features[:1])
    p = predict_softmax(x, fit_softmax(x, labels, n_classes, l2, steps))
    return -np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None))
