"""dense: every input feature to every one of `units` outputs, y = act(x W^T + b)."""

import numpy as np

from .base import Layer, LayerError, activation_name, alpha_arg, boolean, fmt_shape, he_or_glorot, positive_int


class Dense(Layer):
    kind = "dense"

    def __init__(self, units, bias=True, activation=None, alpha=0.01):
        super().__init__()
        self.units = positive_int(units, "units")
        self.bias = boolean(bias, "bias")
        self.activation = activation_name(activation)
        self.alpha = alpha_arg(alpha)

    def config(self):
        return {"units": self.units, "bias": self.bias, "activation": self.activation, "alpha": self.alpha}

    def output_shape(self, in_shape):
        if len(in_shape) != 1:
            raise LayerError(f"dense needs a flat input, got {fmt_shape(in_shape)}: add "
                             "'- flatten' (or a global pooling layer) before it")
        return (self.units,)

    def param_shapes(self):
        shapes = {"weight": (self.units, self.in_shape[0])}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    def macs(self):
        return self.units * self.in_shape[0]

    def describe(self):
        return f"{self.in_shape[0]:,} → {self.units:,} ({self.in_shape[0] * self.units:,} weights)"

    def init_params(self, rng, dtype, init_activation):
        d, u = self.in_shape[0], self.units
        # internal layout = boundary layout (units, in_features); x @ W.T needs no copy
        self.params["weight"] = he_or_glorot(rng, (u, d), d, u, init_activation, dtype)
        if self.bias:
            self.params["bias"] = np.zeros(u, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, training, record=False):
        from ..kernels.dense import dense_forward

        # (N, D) @ (D, U) -> (N, U)
        y = dense_forward(x, self.params["weight"], self.params.get("bias"), self.activation, self.alpha)
        self._cache = (x, y) if training or record else None
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.dense import dense_backward

        x, y = self._cache
        dx, dw, db = dense_backward(dy, x, y, self.params["weight"], self.activation, need_dx, self.alpha)
        self.grads["weight"] += dw
        if self.bias:
            self.grads["bias"] += db
        self._cache = None
        return dx
