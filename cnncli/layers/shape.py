"""flatten and dropout: layers that move or mask values without parameters."""

import math

import numpy as np

from .base import Layer, fmt_shape, rate as check_rate


class Flatten(Layer):
    """h x w x c -> (c*h*w,) in (C, H, W) order, so dense weights match PyTorch / ONNX."""

    kind = "flatten"

    def output_shape(self, in_shape):
        n = 1
        for d in in_shape:
            n *= d
        return (n,)

    def describe(self):
        return f"{fmt_shape(self.in_shape)} → {self.out_shape[0]:,} (c,h,w order)"

    def forward(self, x, training, record=False):
        self._x_shape = x.shape
        if x.ndim == 4:  # (N, H, W, C) -> (N, C, H, W) -> (N, C*H*W)
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        if len(self._x_shape) == 4:
            n, h, w, c = self._x_shape
            return np.ascontiguousarray(dy.reshape(n, c, h, w).transpose(0, 2, 3, 1))
        return dy.reshape(self._x_shape)


class Dropout(Layer):
    """Inverted dropout: in training each value is zeroed with probability `rate` and the rest
    scaled by 1 / (1 - rate); at inference it is the identity."""

    kind = "dropout"

    def __init__(self, rate=0.5):
        super().__init__()
        self.rate = check_rate(rate, "rate")
        self.rng = np.random.default_rng(0)  # replaced by the model's seeded generator
        self.preset = None  # a mask drawn beforehand for this batch (parallel/threads.py), else one is drawn

    def config(self):
        return {"rate": self.rate}

    def describe(self):
        return f"rate {self.rate:g}"

    def scratch_bytes(self, batch_size):
        return math.prod(self.out_shape) * 4  # the mask

    def mask(self, shape, dtype):
        """A training mask of this shape: 0 with probability `rate`, else 1 / (1 - rate); None
        for rate 0."""
        if self.rate == 0.0:
            return None
        keep = 1.0 - self.rate
        mask = (self.rng.random(shape, dtype=np.float32) < keep).astype(dtype)
        mask *= mask.dtype.type(1.0 / keep)
        return mask

    def forward(self, x, training, record=False):
        preset = self.preset
        self._mask = None if not training else preset if preset is not None else self.mask(x.shape, x.dtype)
        return x if self._mask is None else x * self._mask

    def backward(self, dy, need_dx=True):
        return dy if self._mask is None else dy * self._mask
