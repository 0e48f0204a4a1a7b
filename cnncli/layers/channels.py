"""lrn, shuffle and slice: layers that mix or select a map's channels at each position, without
parameters (AlexNet's and Inception v1's local response normalisation, ShuffleNet's channel
shuffle, ShuffleNetV2's channel split)."""

import math

import numpy as np

from .base import Layer, LayerError, fmt_shape, positive_int, rate


def _needs_map(kind, in_shape):
    if len(in_shape) != 3:
        raise LayerError(f"{kind} works on the channels of a feature map, got a flat vector of "
                         f"{fmt_shape(in_shape)}", "from")


def window_sum(x, lo, hi):
    """s[..., c] = sum of x[..., i] for i in [c - lo, c + hi] within the channels (zeros beyond)."""
    c = x.shape[-1]
    padded = np.zeros(x.shape[:-1] + (c + lo + hi,), x.dtype)
    padded[..., lo:lo + c] = x
    s = padded[..., 0:c].copy()
    for k in range(1, lo + hi + 1):
        s += padded[..., k:k + c]
    return s


class LRN(Layer):
    """Local response normalisation across channels (ONNX LRN, PyTorch local_response_norm), size odd:
    y_c = x_c / (bias + alpha / size * sum_{i = c - size//2}^{c + size//2} x_i^2)^beta."""

    kind = "lrn"
    conv_like = True          # AlexNet's normalised conv features
    init_role = "stops"
    kernels = ()
    keeps_input = True        # x, beside d

    def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0):
        super().__init__()
        self.size = positive_int(size, "size")
        if self.size % 2 == 0:   # an even window has no centre: PyTorch and ONNX place it apart, ONNX Runtime refuses it
            raise LayerError(f"lrn's 'size' must be odd (a window centred on each channel), got {size}", "size")
        self.alpha = rate(alpha, "alpha", 0.0, math.inf)
        self.beta = rate(beta, "beta", 0.0, math.inf)
        self.bias = rate(bias, "bias", 0.0, math.inf, include_low=False)

    def config(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "bias": self.bias}

    def output_shape(self, in_shape):
        _needs_map(self.kind, in_shape)
        return in_shape

    def describe(self):
        return f"size {self.size}, alpha {self.alpha:g}, beta {self.beta:g}, bias {self.bias:g}"

    def scratch_bytes(self, batch_size):
        return math.prod(self.out_shape) * 4   # the denominator d (the input: keeps_input)

    def onnx(self, g, xs, w, prefix, out):
        return g.node("LRN", xs, out, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.bias)

    def _denominator(self, x):
        """d = bias + alpha / size * (the window's sum of squares), in x's dtype."""
        dt = x.dtype.type
        s = window_sum(x * x, self.size // 2, self.size // 2)
        s *= dt(self.alpha / self.size)
        s += dt(self.bias)
        return s

    def forward(self, x, ctx):
        d = self._denominator(x)
        y = x * np.power(d, x.dtype.type(-self.beta))
        self._cache = (x, d) if ctx.training or ctx.record else None
        return y

    def backward(self, dy, ctx, need_dx=True):
        """dx_j = dy_j d_j^-beta - 2 alpha beta / size * x_j * sum_{c: j in window(c)} dy_c x_c d_c^(-beta-1)."""
        x, d = self._cache
        self._cache = None
        if not need_dx:
            return None
        dt = x.dtype.type
        p = np.power(d, dt(-self.beta))
        t = dy * x * p / d
        # j is in c's window [c - size//2, c + size//2] when c is in j's: the same window
        back = window_sum(t, self.size // 2, self.size // 2)
        return dy * p - dt(2 * self.alpha * self.beta / self.size) * x * back


class Shuffle(Layer):
    """ShuffleNet's channel shuffle: c channels as g groups of c/g, read group by group across:
    y[..., j g + i] = x[..., i (c/g) + j] (ONNX: Reshape (N, g, c/g, H, W), Transpose, Reshape)."""

    kind = "shuffle"
    conv_like = True
    init_role = "through"     # a permutation of channels: the next layer's activation decides
    kernels = ()

    def __init__(self, groups=2):
        super().__init__()
        self.groups = positive_int(groups, "groups")

    def config(self):
        return {"groups": self.groups}

    def output_shape(self, in_shape):
        _needs_map(self.kind, in_shape)
        if in_shape[-1] % self.groups:
            raise LayerError(f"shuffle's {self.groups} groups do not divide {in_shape[-1]} channels", "groups")
        return in_shape

    def describe(self):
        return f"{self.groups} groups of {self.in_shape[-1] // self.groups}"

    def onnx(self, g, xs, w, prefix, out):
        h, wd, c = self.in_shape
        split = g.node("Reshape", [xs[0], g.ints(f"{prefix}.split_shape", [0, self.groups, c // self.groups, h, wd])],
                       f"{prefix}.split")
        across = g.node("Transpose", [split], f"{prefix}.across", perm=[0, 2, 1, 3, 4])
        return g.node("Reshape", [across, g.ints(f"{prefix}.join_shape", [0, c, h, wd])], out)

    @staticmethod
    def _permute(x, a, b):
        """(..., a * b) read as (..., a, b) -> (..., b, a), flat again."""
        return np.ascontiguousarray(x.reshape(x.shape[:-1] + (a, b)).swapaxes(-1, -2)).reshape(x.shape)

    def forward(self, x, ctx):
        return self._permute(x, self.groups, x.shape[-1] // self.groups)

    def backward(self, dy, ctx, need_dx=True):
        # the inverse permutation: c/g groups of g, read across
        return self._permute(dy, dy.shape[-1] // self.groups, self.groups) if need_dx else None


class Slice(Layer):
    """Channels [start, stop) of a map or a vector: y[..., j] = x[..., start + j] (ShuffleNetV2's
    channel split, `x.chunk(2, dim=1)`; ONNX's Slice or Split on axis 1)."""

    kind = "slice"
    conv_like = True          # a part of the features, as computed
    init_role = "through"
    kernels = ()

    def __init__(self, stop, start=0):
        super().__init__()
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise LayerError(f"slice's 'start' must be an integer >= 0, got {start!r}", "start")
        self.start = start
        self.stop = positive_int(stop, "stop")
        if self.stop <= self.start:
            raise LayerError(f"slice's 'stop' ({stop}) must be above its 'start' ({start})", "stop")

    def config(self):
        return {"start": self.start, "stop": self.stop}

    def output_shape(self, in_shape):
        if self.stop > in_shape[-1]:
            raise LayerError(f"slice's 'stop' {self.stop} is beyond the input's {in_shape[-1]} channels", "stop")
        return tuple(in_shape[:-1]) + (self.stop - self.start,)

    def describe(self):
        return f"channels {self.start}…{self.stop - 1} of {self.in_shape[-1]}"

    def onnx(self, g, xs, w, prefix, out):
        return g.node("Slice", [xs[0], g.ints(f"{prefix}.starts", [self.start]), g.ints(f"{prefix}.ends", [self.stop]),
                                g.ints(f"{prefix}.axes", [1])], out)

    def forward(self, x, ctx):
        self._channels = x.shape[-1]
        return np.ascontiguousarray(x[..., self.start:self.stop])

    def backward(self, dy, ctx, need_dx=True):
        if not need_dx:
            return None
        dx = np.zeros(dy.shape[:-1] + (self._channels,), dy.dtype)
        dx[..., self.start:self.stop] = dy
        return dx
