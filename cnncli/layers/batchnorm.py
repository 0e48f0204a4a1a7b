"""batchnorm: normalise each channel (after conv) or unit (after dense) over the batch.

Training: y = weight * (x - mean_B) / sqrt(var_B + eps) + bias, with batch statistics, and
running_mean/var <- (1 - momentum) * running + momentum * batch (unbiased var, as PyTorch).
Inference: the same formula with the running statistics.
"""

import numpy as np

from .base import Layer, LayerError, rate


class BatchNorm(Layer):
    kind = "batchnorm"

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = rate(momentum, "momentum", 0.0, 1.0, include_low=False)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
            raise LayerError(f"'eps' must be a positive number, got {eps!r}", "eps")
        self.eps = float(eps)

    def config(self):
        return {"momentum": self.momentum, "eps": self.eps}

    def describe(self):
        return f"per {'channel' if len(self.in_shape) == 3 else 'unit'}"

    def param_shapes(self):
        c = self.in_shape[-1]
        return {"weight": (c,), "bias": (c,)}

    def buffer_shapes(self):
        c = self.in_shape[-1]
        return {"running_mean": (c,), "running_var": (c,)}

    def init_params(self, rng, dtype, init_activation):
        c = self.in_shape[-1]
        self.params = {"weight": np.ones(c, dtype), "bias": np.zeros(c, dtype)}
        self.buffers = {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, training):
        c = x.shape[-1]
        x2 = x.reshape(-1, c)  # (M, C): every position of every image is a sample of its channel
        dt = x.dtype.type
        if training:
            m = x2.shape[0]
            mean = x2.mean(axis=0, dtype=x.dtype)
            xc = x2 - mean
            var = (xc * xc).mean(axis=0, dtype=x.dtype)
            mom = dt(self.momentum)
            unbiased = var * dt(m / max(m - 1, 1))
            self.buffers["running_mean"] *= dt(1) - mom
            self.buffers["running_mean"] += mom * mean
            self.buffers["running_var"] *= dt(1) - mom
            self.buffers["running_var"] += mom * unbiased
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
            xc = x2 - mean
        inv_std = dt(1) / np.sqrt(var + dt(self.eps))
        xhat = xc * inv_std
        y = xhat * self.params["weight"] + self.params["bias"]
        self._cache = (xhat, inv_std) if training else None
        return y.reshape(x.shape)

    def backward(self, dy, need_dx=True):
        if self._cache is None:
            raise RuntimeError("batchnorm backward needs a training-mode forward first")
        xhat, inv_std = self._cache
        c = dy.shape[-1]
        dy2 = dy.reshape(-1, c)
        m = dy2.shape[0]
        dbeta = dy2.sum(axis=0)
        dgamma = (dy2 * xhat).sum(axis=0)
        self.grads["weight"] += dgamma
        self.grads["bias"] += dbeta
        self._cache = None
        if not need_dx:
            return None
        # dx = (gamma * inv_std / M) * (M * dy - sum(dy) - xhat * sum(dy * xhat))
        scale = self.params["weight"] * inv_std / dy.dtype.type(m)
        dx = scale * (dy2 * dy.dtype.type(m) - dbeta - xhat * dgamma)
        return dx.reshape(dy.shape)
