"""dense: every input feature to every one of `units` outputs, y = act(x W^T + b)."""

import numpy as np

from .base import Layer, LayerError, activation_name, alpha_arg, boolean, fmt_shape, he_or_glorot, positive_int


class Dense(Layer):
    kind = "dense"
    activation_key = "activation"
    conv_like = False
    init_role = "supplies"
    kernels = ("activation", "dense")
    keeps_input = True        # dw = x^T dz

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

    def onnx(self, g, xs, w, prefix, out):
        inputs = [xs[0], g.const(f"{prefix}.weight", w["weight"])]
        if self.bias:
            inputs.append(g.const(f"{prefix}.bias", w["bias"]))
        return g.node("Gemm", inputs, out, transB=1)  # x W^T + b

    def forward(self, x, ctx):
        from ..kernels.dense import dense_forward

        # (N, D) @ (D, U) -> (N, U)
        z = dense_forward(x, self.params["weight"], self.params.get("bias"), self.kernel_activation(ctx), self.alpha)
        y, kept = self.finish_activation(z, ctx)
        self._cache = (x, kept) if ctx.training or ctx.record else None
        return y

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.dense import dense_backward

        x, kept = self._cache
        dy, act = self.activation_backward(dy, kept)
        dx, dw, db = dense_backward(dy, x, kept, self.params["weight"], act, need_dx, self.alpha)
        self.grads["weight"] += dw
        if self.bias:
            self.grads["bias"] += db
        self._cache = None
        return dx
