"""flatten, pad and dropout: layers that move, surround or mask values without parameters."""

import math

import numpy as np

from .base import Layer, LayerError, fmt_shape, padding_arg, rate as check_rate


class Flatten(Layer):
    """h x w x c -> (c*h*w,) in (C, H, W) order, so dense weights match PyTorch / ONNX."""

    kind = "flatten"
    conv_like = False
    init_role = "stops"
    kernels = ()

    def output_shape(self, in_shape):
        n = 1
        for d in in_shape:
            n *= d
        return (n,)

    def describe(self):
        return f"{fmt_shape(self.in_shape)} → {self.out_shape[0]:,} (c,h,w order)"

    def onnx(self, g, xs, w, prefix, out):
        # (N, C, H, W) -> (N, C*H*W): (c, h, w) order, as cnncli's flatten and its dense weights
        return g.node("Flatten", xs, out, axis=1) if len(self.in_shape) == 3 else xs[0]

    def forward(self, x, ctx):
        self._x_shape = x.shape
        if x.ndim == 4:  # (N, H, W, C) -> (N, C, H, W) -> (N, C*H*W)
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x).reshape(x.shape[0], -1)

    def backward(self, dy, ctx, need_dx=True):
        if len(self._x_shape) == 4:
            n, h, w, c = self._x_shape
            return np.ascontiguousarray(dy.reshape(n, c, h, w).transpose(0, 2, 3, 1))
        return dy.reshape(self._x_shape)


class Pad(Layer):
    """Zeros around a map: y (h + t + b) x (w + l + r) x c, x at rows [t, t + h), columns [l, l + w)
    (ONNX's Pad, mode constant, value 0, on H and W; PyTorch's ZeroPad2d / F.pad). A conv folds
    its own zero padding; this kind is for what a conv does not read: a max pool after zeros
    (which pads with -inf itself), an average that counts the padding in."""

    kind = "pad"
    conv_like = False
    init_role = "through"     # zeros added: the next layer's activation decides
    kernels = ()

    def __init__(self, pads=1):
        super().__init__()
        pads = padding_arg(pads, "pads")
        if isinstance(pads, str):
            raise LayerError(f"pad's 'pads' must be an integer, [ph, pw] or [top, bottom, left, right]; "
                             f"got {pads!r}", "pads")
        self.pads = pads if len(pads) == 4 else (pads[0], pads[0], pads[1], pads[1])

    def config(self):
        return {"pads": list(self.pads)}

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise LayerError(f"pad needs an h x w x channels input, got {fmt_shape(in_shape)}", "from")
        t, b, left, r = self.pads
        return (in_shape[0] + t + b, in_shape[1] + left + r, in_shape[2])

    def describe(self):
        return "zeros " + ",".join(map(str, self.pads)) + " (t,b,l,r)"

    def onnx(self, g, xs, w, prefix, out):
        t, b, left, r = self.pads    # ONNX pads: (begin N, C, H, W, end N, C, H, W)
        return g.node("Pad", [xs[0], g.ints(f"{prefix}.pads", [0, 0, t, left, 0, 0, b, r])], out, mode="constant")

    def forward(self, x, ctx):
        # (N, H, W, C) -> (N, H + t + b, W + l + r, C)
        t, b, left, r = self.pads
        n, h, w, c = x.shape
        y = np.zeros((n, h + t + b, w + left + r, c), x.dtype)
        y[:, t:t + h, left:left + w] = x
        self._x_hw = (h, w)
        return y

    def backward(self, dy, ctx, need_dx=True):
        if not need_dx:
            return None
        t, _, left, _ = self.pads
        h, w = self._x_hw
        return np.ascontiguousarray(dy[:, t:t + h, left:left + w])


class Dropout(Layer):
    """Inverted dropout: in training each value is zeroed with probability `rate` and the rest
    scaled by 1 / (1 - rate); at inference it is the identity."""

    kind = "dropout"
    conv_like = False
    init_role = "through"
    kernels = ()
    random = True

    def __init__(self, rate=0.5):
        super().__init__()
        self.rate = check_rate(rate, "rate")

    def config(self):
        return {"rate": self.rate}

    def describe(self):
        return f"rate {self.rate:g}"

    def scratch_bytes(self, batch_size):
        return math.prod(self.out_shape) * 4  # the mask

    def onnx(self, g, xs, w, prefix, out):
        return xs[0]          # the identity at inference

    def draw(self, shape, dtype, rng):
        """A training mask of this shape from rng: 0 with probability `rate`, else 1 / (1 - rate);
        None for rate 0."""
        if self.rate == 0.0:
            return None
        keep = 1.0 - self.rate
        mask = (rng.random(shape, dtype=np.float32) < keep).astype(dtype)
        mask *= mask.dtype.type(1.0 / keep)
        return mask

    def forward(self, x, ctx):
        """ctx.masks[index]: this batch's mask drawn beforehand (the thread shards), else one
        drawn from ctx.rngs[index], the layer's stream."""
        self._mask = None
        if ctx.training:
            preset = ctx.masks.get(self.index)
            self._mask = preset if preset is not None else self.draw(x.shape, x.dtype, ctx.rngs[self.index])
        return x if self._mask is None else x * self._mask

    def backward(self, dy, ctx, need_dx=True):
        mask, self._mask = self._mask, None      # a batch-sized array: not kept past the step
        return dy if mask is None else dy * mask
