"""conv: nf filters of fh x fw x d slide over an h x w x d input (cross-correlation, no flip)."""

import numpy as np

from ..budgets import is_pointwise, keeps_columns
from .base import (Layer, LayerError, activation_name, alpha_arg, boolean, fmt_shape, he_or_glorot,
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
        self.alpha = alpha_arg(alpha)

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"filters": self.filters, "size": list(self.size), "stride": list(self.stride),
                "padding": pad, "bias": self.bias, "activation": self.activation, "alpha": self.alpha}

    def geometry(self, in_shape):
        """-> (pads (top, bottom, left, right), (out_h, out_w)) for an h x w x c input."""
        if len(in_shape) != 3:
            raise LayerError(f"conv needs an h x w x channels input, got {fmt_shape(in_shape)}")
        h, w, _ = in_shape
        pads, out_hw = resolve_padding(self.padding, (h, w), self.size, self.stride)
        ph, pw = h + pads[0] + pads[1], w + pads[2] + pads[3]
        if self.size[0] > ph or self.size[1] > pw:
            raise LayerError(f"the {self.size[0]}x{self.size[1]} filter is larger than its "
                             f"{'padded ' if ph > h or pw > w else ''}input {ph}x{pw}: use a smaller "
                             "'size', or padding: same", "size")
        return pads, out_hw

    def output_shape(self, in_shape):
        _, (oh, ow) = self.geometry(in_shape)
        return (oh, ow, self.filters)

    def build(self, in_shape):
        out = super().build(in_shape)
        self.pads, self.out_hw = self.geometry(self.in_shape)
        return out

    def param_shapes(self):
        c = self.in_shape[2]
        shapes = {"weight": (self.filters, c, self.size[0], self.size[1])}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def macs(self):
        oh, ow, f = self.out_shape
        return oh * ow * f * self.size[0] * self.size[1] * self.in_shape[2]

    def scratch_bytes(self, batch_size):
        """The im2col columns, when the layer keeps them from forward to backward."""
        fh, fw = self.size
        positions, depth = self.out_hw[0] * self.out_hw[1], fh * fw * self.in_shape[2]
        pointwise = is_pointwise(self.size, self.stride, self.pads)
        return positions * depth * 4 if keeps_columns(batch_size, positions, depth, pointwise) else 0

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
        workspace = getattr(self, "_workspace", None) if training else None
        y, cols = conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.activation,
                                 self.stride, self.pads, self.out_hw, self.alpha, workspace)
        # training reuses the columns array next step; inference keeps nothing alive
        self._workspace = cols if training else None
        self._cache = (x, y, cols) if training else None
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.conv import conv2d_backward

        x, y, cols = self._cache
        dx, dw, db = conv2d_backward(dy, x, y, self.params["weight"], self.activation, self.stride,
                                     self.pads, self.out_hw, need_dx, self.alpha, cols)
        self.grads["weight"] += dw
        if self.bias:
            self.grads["bias"] += db
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
