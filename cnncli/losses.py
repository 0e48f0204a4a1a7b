"""Losses fused with the output activation, for numerical stability and a simple gradient.

softmax + categorical cross-entropy:  L = -sum_k t_k log softmax(z)_k,    dL/dz = softmax(z) - t
sigmoid + binary cross-entropy:       L = max(z,0) - z t + log(1 + e^-|z|), dL/dz = sigmoid(z) - t
Label smoothing eps replaces one-hot t by (1 - eps) t + eps / K (K = 2 for the sigmoid head).
Losses are means over the batch; gradients are divided by the batch size accordingly.
"""

import numpy as np


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z):
    return np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))))


def softmax_cross_entropy(logits, labels, smoothing=0.0):
    """logits (N, K), labels (N,) ints -> (mean loss, dL/dlogits, probabilities)."""
    n, k = logits.shape
    dt = logits.dtype.type
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    target = np.full((n, k), dt(smoothing / k), dtype=logits.dtype)
    target[np.arange(n), labels] += dt(1.0 - smoothing)
    loss = float(-(target * log_probs).sum() / n)
    probs = np.exp(log_probs)
    return loss, (probs - target) / dt(n), probs


def sigmoid_binary_cross_entropy(logits, labels, smoothing=0.0):
    """logits (N, 1), labels (N,) in {0, 1} -> (mean loss, dL/dlogits, probabilities (N, 2))."""
    n = logits.shape[0]
    dt = logits.dtype.type
    z = logits[:, 0]
    t = labels.astype(logits.dtype) * dt(1.0 - smoothing) + dt(smoothing / 2)
    loss = float((np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).mean())
    p = sigmoid(z).astype(logits.dtype)
    grad = ((p - t) / dt(n))[:, None]
    return loss, grad, np.stack([1 - p, p], axis=1)


LOSSES = {"softmax": softmax_cross_entropy, "sigmoid": sigmoid_binary_cross_entropy}
