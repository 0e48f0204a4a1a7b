"""conv: nf filters of fh x fw x d slide over an h x w x d input (cross-correlation, no flip)."""

import numpy as np

from .base import (Layer, LayerError, activation_name, boolean, fmt_shape, he_or_glorot,
                   padding_arg, pair, positive_int, resolve_padding, stride_pad)


class Conv(Layer):
    kind = "conv"

    def __init__(self, filters, size=3, stride=1, padding="valid", bias=True, activation=None, alpha=0.01):
        super().__init__()
        self.filters = positive_int(filters, "filters")
        self.size = pair(size, "size")
        self.stride = pair(stride, "stride")
        self.padding = padding_arg(padding)
        self.bias = boolean(bias, "bias")
        self.activation = activation_name(activation)
        self.alpha = float(alpha)

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"filters": self.filters, "size": list(self.size), "stride": list(self.stride),
                "padding": pad, "bias": self.bias, "activation": self.activation, "alpha": self.alpha}

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise LayerError(f"conv needs an h x w x channels input, got {fmt_shape(in_shape)}")
        h, w, _ = in_shape
        self.pads, out_hw = resolve_padding(self.padding, (h, w), self.size, self.stride)
        ph, pw = h + self.pads[0] + self.pads[1], w + self.pads[2] + self.pads[3]
        if self.size[0] > ph or self.size[1] > pw:
            raise LayerError(f"the {self.size[0]}x{self.size[1]} filter is larger than its "
                             f"{'padded ' if ph > h or pw > w else ''}input {ph}x{pw}: use a smaller "
                             "'size', or padding: same", "size")
        self.out_hw = out_hw
        return (out_hw[0], out_hw[1], self.filters)

    def param_shapes(self):
        c = self.in_shape[2]
        shapes = {"weight": (self.filters, c, self.size[0], self.size[1])}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def macs(self):
        oh, ow, f = self.out_shape
        return oh * ow * f * self.size[0] * self.size[1] * self.in_shape[2]

    def describe(self):
        return f"{self.filters}× {self.size[0]}×{self.size[1]}×{self.in_shape[2]}, " + stride_pad(self)

    def receptive(self):
        return self.size, self.stride

    def init_params(self, rng, dtype, init_activation):
        fh, fw = self.size
        c, f = self.in_shape[2], self.filters
        # internal layout (FH, FW, C, F): the GEMM right-hand side, rows in im2col order
        self.params["weight"] = he_or_glorot(rng, (fh, fw, c, f), fh * fw * c, fh * fw * f,
                                             init_activation, dtype)
        if self.bias:
            self.params["bias"] = np.zeros(f, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, training):
        from ..kernels.conv import conv2d_forward

        # (N, H, W, C) -> (N, OH, OW, F)
        y, cols = conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.activation,
                                 self.stride, self.pads, self.out_hw, self.alpha, getattr(self, "_workspace", None))
        self._workspace = cols
        self._cache = (x, y, cols) if training else None  # inference keeps nothing alive
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.conv import conv2d_backward

        x, y, cols = self._cache
        dx, dw, db = conv2d_backward(dy, x, y, self.params["weight"], self.activation, self.stride,
                                     self.pads, self.out_hw, need_dx, self.alpha, cols)
        self.grads["weight"][...] = dw
        if self.bias:
            self.grads["bias"][...] = db
        self._cache = None
        return dx

    def export(self):
        out = {"weight": np.ascontiguousarray(self.params["weight"].transpose(3, 2, 0, 1))}
        if self.bias:
            out["bias"] = self.params["bias"].copy()
        return out

    def load(self, arrays):
        self.params["weight"][...] = np.asarray(arrays["weight"]).transpose(2, 3, 1, 0)
        if self.bias:
            self.params["bias"][...] = arrays["bias"]
