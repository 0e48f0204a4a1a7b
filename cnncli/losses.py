"""Losses fused with the output activation, for numerical stability and a simple gradient.

softmax + categorical cross-entropy:  L = -sum_k t_k log softmax(z)_k,    dL/dz = softmax(z) - t
sigmoid + binary cross-entropy:       L = max(z,0) - z t + log(1 + e^-|z|), dL/dz = sigmoid(z) - t
Label smoothing eps replaces one-hot t by (1 - eps) t + eps / K (K = 2 for the sigmoid head).
Losses are weighted means over the batch: L = sum_i w_i L_i / sum_i w_i, with w_i = 1, or the
class weight of image i's label (PyTorch's CrossEntropyLoss(weight=...) rule); gradients follow.
"""

import numpy as np


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def _scale(weights, dtype):
    """Per-sample factors of the weighted mean, (N,): w_i / sum w."""
    w = np.asarray(weights, np.float64)
    return (w / w.sum()).astype(dtype)


def softmax_cross_entropy(logits, labels, smoothing=0.0, weights=None):
    """logits (N, K), labels (N,) ints, weights (N,) or None -> (mean loss, dL/dlogits, probabilities)."""
    n, k = logits.shape
    dt = logits.dtype.type
    log_probs = log_softmax(logits)
    target = np.full((n, k), dt(smoothing / k), dtype=logits.dtype)
    target[np.arange(n), labels] += dt(1.0 - smoothing)
    probs = np.exp(log_probs)
    if weights is None:
        return float(-(target * log_probs).sum() / n), (probs - target) / dt(n), probs
    scale = _scale(weights, logits.dtype)
    return float(-((target * log_probs).sum(axis=1) * scale).sum()), (probs - target) * scale[:, None], probs


def sigmoid_binary_cross_entropy(logits, labels, smoothing=0.0, weights=None):
    """logits (N, 1), labels (N,) in {0, 1} -> (mean loss, dL/dlogits, probabilities (N, 2))."""
    n = logits.shape[0]
    dt = logits.dtype.type
    z = logits[:, 0]
    t = labels.astype(logits.dtype) * dt(1.0 - smoothing) + dt(smoothing / 2)
    per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    p = sigmoid(z).astype(logits.dtype)
    probs = np.stack([1 - p, p], axis=1)
    if weights is None:
        return float(per.mean()), ((p - t) / dt(n))[:, None], probs
    scale = _scale(weights, logits.dtype)
    return float((per * scale).sum()), ((p - t) * scale)[:, None], probs


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": sigmoid_binary_cross_entropy}


class Loss:
    """The fused loss of a model's head: loss(logits, labels) -> (mean loss, dL/dlogits, probabilities).
    class_weights: one weight per class (sample i weighs class_weights[labels[i]]), or None."""

    def __init__(self, head, smoothing=0.0, class_weights=None):
        self.head, self.smoothing = head, smoothing
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float64)

    def __call__(self, logits, labels):
        weights = None if self.class_weights is None else self.class_weights[labels]
        return LOSSES[self.head](logits, labels, self.smoothing, weights)

    def probabilities(self, logits):
        """(N, K) logits -> (N, n_classes) probabilities, as the loss computes them."""
        if self.head == "sigmoid":
            p = sigmoid(logits[:, 0]).astype(logits.dtype)
            return np.stack([1 - p, p], axis=1)
        return np.exp(log_softmax(logits))


def balanced_weights(counts):
    """'auto' class weights: inverse class frequency, N / (K n_c) (scikit-learn's 'balanced')."""
    counts = np.asarray(counts, np.float64)
    return (counts.sum() / (len(counts) * counts)).tolist()
