"""Losses fused with the output activation, for numerical stability and a simple gradient.

softmax + categorical cross-entropy:  L = -sum_k t_k log softmax(z)_k,    dL/dz = softmax(z) - t
sigmoid + binary cross-entropy:       L = max(z,0) - z t + log(1 + e^-|z|), dL/dz = sigmoid(z) - t
Label smoothing eps replaces one-hot t by (1 - eps) t + eps / K (K = 2 for the sigmoid head).
Losses are weighted means over the batch: L = sum_i w_i L_i / sum_i w_i, with w_i = 1, or the
class weight of image i's label (PyTorch's CrossEntropyLoss(weight=...) rule); gradients follow.
Mixed labels (mixup, cutmix: share m of class a, 1 - m of class b) count as two weighted images,
  L = sum_i (m_i c_a L_i(a) + (1 - m_i) c_b L_i(b)) / sum_i (m_i c_a + (1 - m_i) c_b)   (c: class weights or 1),
which is one image of weight m c_a + (1 - m) c_b with the soft target (m c_a t_a + (1 - m) c_b t_b) / that weight:
the same fused formulas with a soft t. Plain int labels take the path they always took.
A part of a batch (a thread's or a process's shard) is computed with the WHOLE batch's
normaliser, `total` (Loss.total: the image count, or the sum of the weights): its value is then
its share of the batch's mean and the parts' values add up to it, and its gradient rows are the
whole batch's rows, bit for bit (each row's arithmetic does not depend on the other rows).
Multi-label (K sigmoid outputs, targets (N, K) in [0, 1]), pos_weight c_k per label (1 without one):
  L = mean_{i,k} [(1 - t) z + (1 + (c - 1) t) softplus(-z)],  dL/dz = ((1 + (c - 1) t) p - c t) / (N K)
(PyTorch's BCEWithLogitsLoss(pos_weight=c)); smoothing eps: t -> (1 - eps) t + eps / 2; mixed images
take the soft target m t_a + (1 - m) t_b.
"""

import numpy as np

from .mixed import Mixed


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def _scale(weights, dtype, total=None):
    """Per-sample factors of the weighted mean, (N,): w_i / sum w (total: the whole batch's sum)."""
    w = np.asarray(weights, np.float64)
    return (w / (w.sum() if total is None else total)).astype(dtype)


def softmax_cross_entropy(logits, labels, smoothing=0.0, weights=None, total=None):
    """logits (N, K), labels (N,) ints, weights (N,) or None -> (mean loss, dL/dlogits, probabilities).
    total: the whole batch's normaliser when these rows are part of it (the module's docstring)."""
    n, k = logits.shape
    dt = logits.dtype.type
    target = np.full((n, k), dt(smoothing / k), dtype=logits.dtype)
    target[np.arange(n), labels] += dt(1.0 - smoothing)
    return softmax_cross_entropy_soft(logits, target, weights, total)


def softmax_cross_entropy_soft(logits, target, weights=None, total=None):
    """logits (N, K), target (N, K) rows summing to 1 -> (mean loss, dL/dlogits, probabilities)."""
    n = logits.shape[0] if total is None else total
    dt = logits.dtype.type
    log_probs = log_softmax(logits)
    probs = np.exp(log_probs)
    if weights is None:
        return float(-(target * log_probs).sum() / n), (probs - target) / dt(n), probs
    scale = _scale(weights, logits.dtype, total)
    return float(-((target * log_probs).sum(axis=1) * scale).sum()), (probs - target) * scale[:, None], probs


def sigmoid_binary_cross_entropy(logits, labels, smoothing=0.0, weights=None, total=None):
    """logits (N, 1), labels (N,) in {0, 1} -> (mean loss, dL/dlogits, probabilities (N, 2))."""
    dt = logits.dtype.type
    t = labels.astype(logits.dtype) * dt(1.0 - smoothing) + dt(smoothing / 2)
    return sigmoid_binary_cross_entropy_soft(logits, t, weights, total)


def sigmoid_binary_cross_entropy_soft(logits, t, weights=None, total=None):
    """logits (N, 1), t (N,) the target probability of class 1 -> (mean loss, dL/dlogits, probabilities (N, 2))."""
    n = logits.shape[0] if total is None else total
    dt = logits.dtype.type
    z = logits[:, 0]
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    p = sigmoid(z).astype(logits.dtype)
    probs = np.stack([1 - p, p], axis=1)
    if weights is None:
        return float(per.mean() if total is None else per.sum() / n), ((p - t) / dt(n))[:, None], probs
    scale = _scale(weights, logits.dtype, total)
    return float((per * scale).sum()), ((p - t) * scale)[:, None], probs


def multilabel_binary_cross_entropy(logits, target, pos_weight=None, total=None):
    """logits (N, K), target (N, K) in [0, 1], pos_weight (K,) or None -> (mean loss, dL/dlogits, sigmoid (N, K)).
    total: the whole batch's N x K when these rows are part of it."""
    z = logits.astype(np.float64)
    t = np.asarray(target, np.float64)
    c = np.ones(z.shape[1]) if pos_weight is None else np.asarray(pos_weight, np.float64)
    lw = 1.0 + (c - 1.0) * t                                   # the weight of the log p term
    softplus_neg = np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z)))   # -log sigmoid(z)
    per = (1.0 - t) * z + lw * softplus_neg
    p = sigmoid(z)
    n = z.size if total is None else total
    grad = (lw * p - c * t) / n
    return float(per.mean() if total is None else per.sum() / n), grad.astype(logits.dtype), p.astype(logits.dtype)


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": sigmoid_binary_cross_entropy}
SOFT_LOSSES = {"softmax": softmax_cross_entropy_soft, "sigmoid": sigmoid_binary_cross_entropy_soft}


class Loss:
    """The fused loss of a model's head: loss(logits, labels) -> (mean loss, dL/dlogits, probabilities).
    class_weights: one weight per class (sample i weighs class_weights[labels[i]]), or None."""

    def __init__(self, head, smoothing=0.0, class_weights=None):
        self.head, self.smoothing = head, smoothing
        weights = None if class_weights is None else np.asarray(class_weights, np.float64)
        # multi-label: class_weights are each label's pos_weight, no per-image weight
        self.pos_weight = weights if head == "multilabel" else None
        self.class_weights = None if head == "multilabel" else weights

    def __call__(self, logits, labels, total=None):
        """labels: (N,) ints, or Mixed labels (two classes and a share per image); multi-label:
        (N, K) 0/1 targets, or Mixed of two such. total: the whole batch's self.total(labels)
        when these rows are a part of it (a shard): the value is then the part's share of the
        batch's mean loss, and the gradient rows are the whole batch's."""
        if self.head == "multilabel":
            return self._multilabel(logits, labels, total)
        if isinstance(labels, Mixed):
            return self._mixed(logits, labels, total)
        weights = None if self.class_weights is None else self.class_weights[labels]
        return LOSSES[self.head](logits, labels, self.smoothing, weights, total)

    def total(self, labels):
        """The normaliser of a batch's mean loss: its images, or the sum of their class weights
        (a mixed image: its classes' weights by share); multi-label: images x labels."""
        if self.head == "multilabel":
            return float((labels.first if isinstance(labels, Mixed) else np.asarray(labels)).size)
        if self.class_weights is None:
            return float(len(labels))
        if isinstance(labels, Mixed):
            return float(self._mixed_weights(labels)[2].sum())
        return float(np.asarray(self.class_weights[labels], np.float64).sum())

    def finish(self, value, probs, labels):
        """The value a training step reports, from its loss (its parts' values added up)."""
        return value

    def _mixed_weights(self, labels):
        """-> (each image's share of its first class's target, of its second's, its weight or None)."""
        m = labels.weight.astype(np.float64)
        if self.class_weights is None:
            return m, 1.0 - m, None
        wa, wb = m * self.class_weights[labels.first], (1.0 - m) * self.class_weights[labels.second]
        weights = wa + wb
        return wa / weights, wb / weights, weights

    def _mixed(self, logits, labels, total=None):
        wa, wb, weights = self._mixed_weights(labels)
        eps = self.smoothing
        if self.head == "sigmoid":
            t = (wa * labels.first + wb * labels.second) * (1.0 - eps) + eps / 2
        else:
            k = logits.shape[1]
            t = np.full((len(wa), k), eps / k)
            rows = np.arange(len(wa))
            t[rows, labels.first] += (1.0 - eps) * wa
            t[rows, labels.second] += (1.0 - eps) * wb
        return SOFT_LOSSES[self.head](logits, t.astype(logits.dtype), weights, total)

    def _multilabel(self, logits, labels, total=None):
        if isinstance(labels, Mixed):
            m = labels.weight.astype(np.float64)[:, None]
            t = m * labels.first + (1.0 - m) * labels.second
        else:
            t = np.asarray(labels, np.float64)
        eps = self.smoothing
        return multilabel_binary_cross_entropy(logits, t * (1.0 - eps) + eps / 2, self.pos_weight, total)

    def probabilities(self, logits):
        """(N, K) logits -> (N, n_classes) probabilities, as the loss computes them."""
        if self.head == "multilabel":
            return sigmoid(logits).astype(logits.dtype)
        if self.head == "sigmoid":
            p = sigmoid(logits[:, 0]).astype(logits.dtype)
            return np.stack([1 - p, p], axis=1)
        return np.exp(log_softmax(logits))

    def log_probabilities(self, logits):
        """(N, K) logits -> (N, n_classes) log-probabilities, finite for any finite logits."""
        if self.head == "sigmoid":
            z = logits[:, 0]
            log_p = -(np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z))))       # log sigmoid(z)
            log_q = -(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))))        # log (1 - sigmoid(z))
            return np.stack([log_q, log_p], axis=1).astype(logits.dtype)
        return log_softmax(logits)


def balanced_pos_weights(positives, n):
    """'auto' pos_weight of each label: negatives / positives (PyTorch's advice), 1 for a label
    with no positive."""
    positives = np.asarray(positives, np.float64)
    return np.where(positives > 0, (n - positives) / np.maximum(positives, 1), 1.0).tolist()


def balanced_weights(counts):
    """'auto' class weights: inverse class frequency, N / (K n_c) (scikit-learn's 'balanced')."""
    counts = np.asarray(counts, np.float64)
    return (counts.sum() / (len(counts) * counts)).tolist()
