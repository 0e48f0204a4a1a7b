"""dense: every input feature to every one of `units` outputs, y = act(x W^T + b)."""

import numpy as np

from .base import Layer, LayerError, activation_name, boolean, fmt_shape, he_or_glorot, positive_int


class Dense(Layer):
    kind = "dense"
    has_params = True

    def __init__(self, units, bias=True, activation=None, alpha=0.01):
        super().__init__()
        self.units = positive_int(units, "units")
        self.bias = boolean(bias, "bias")
        self.activation = activation_name(activation)
        self.alpha = float(alpha)

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

    def forward(self, x, training):
        from ..kernels.activation import activate

        # (N, D) @ (D, U) -> (N, U)
        y = x @ self.params["weight"].T
        activate(y, self.activation, self.alpha, self.params.get("bias"))
        self._cache = (x, y)
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.activation import activation_grad

        x, y = self._cache
        dz = activation_grad(dy, y, self.activation, self.alpha)
        np.matmul(dz.T, x, out=self.grads["weight"])
        if self.bias:
            dz.sum(axis=0, out=self.grads["bias"])
        self._cache = None
        return dz @ self.params["weight"] if need_dx else None
