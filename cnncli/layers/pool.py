"""maxpool / avgpool over size x size windows, and the global pools that end a fully
convolutional network (h x w x c -> c)."""

import math

from .base import Layer, LayerError, fmt_shape, onnx_pads, padding_arg, pair, resolve_padding, stride_pad


class _Pool(Layer):
    conv_like = False         # pooling only resamples a feature map
    init_role = "stops"
    kernels = ("pool",)

    def __init__(self, size=2, stride=None, padding="valid"):
        super().__init__()
        self.size = pair(size, "size")
        self.stride = self.size if stride is None else pair(stride, "stride")
        self.padding = padding_arg(padding)
        per_axis = self.padding if not isinstance(self.padding, tuple) or len(self.padding) == 2 else \
            (max(self.padding[:2]), max(self.padding[2:]))
        if isinstance(self.padding, tuple) and any(p >= s for p, s in zip(per_axis, self.size)):
            raise LayerError(f"'padding' {list(self.padding)} must be smaller than the window "
                             f"{list(self.size)}, or a window would see only padding", "padding")

    def config(self):
        pad = self.padding if isinstance(self.padding, str) else list(self.padding)
        return {"size": list(self.size), "stride": list(self.stride), "padding": pad}

    def geometry(self, in_shape):
        """-> (pads (top, bottom, left, right), (out_h, out_w)) for an h x w x c input."""
        if len(in_shape) != 3:
            raise LayerError(f"{self.kind} needs an h x w x channels input, got {fmt_shape(in_shape)}")
        h, w, _ = in_shape
        pads, out_hw = resolve_padding(self.padding, (h, w), self.size, self.stride)
        ph, pw = h + pads[0] + pads[1], w + pads[2] + pads[3]
        if self.size[0] > ph or self.size[1] > pw:
            raise LayerError(f"the {self.size[0]}x{self.size[1]} window is larger than its input "
                             f"{ph}x{pw}: use a smaller 'size', or padding: same", "size")
        return pads, out_hw

    def output_shape(self, in_shape):
        _, (oh, ow) = self.geometry(in_shape)
        return (oh, ow, in_shape[2])

    def build(self, in_shape):
        out = super().build(in_shape)
        self.pads, self.out_hw = self.geometry(self.in_shape)
        return out

    def describe(self):
        return f"{self.size[0]}×{self.size[1]}, " + stride_pad(self)

    def receptive(self):
        return self.size, self.stride

    def _onnx_window(self):
        return dict(kernel_shape=list(self.size), strides=list(self.stride), pads=onnx_pads(self.pads))


class MaxPool(_Pool):
    kind = "maxpool"

    def onnx(self, g, xs, w, prefix, out):
        return g.node("MaxPool", xs, out, **self._onnx_window())  # a padded cell is never the maximum

    def forward(self, x, ctx):
        from ..kernels.pool import maxpool_forward

        y, arg = maxpool_forward(x, self.size, self.stride, self.pads, self.out_hw)
        self._cache = (arg, x.shape) if ctx.training or ctx.record else None
        return y

    def scratch_bytes(self, batch_size):
        return math.prod(self.out_shape) * 4  # int32 argmax

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.pool import maxpool_backward

        arg, x_shape = self._cache
        self._cache = None
        return maxpool_backward(dy, arg, x_shape)


class AvgPool(_Pool):
    kind = "avgpool"

    def onnx(self, g, xs, w, prefix, out):
        # the mean over the real cells under the window, as cnncli
        return g.node("AveragePool", xs, out, count_include_pad=0, **self._onnx_window())

    def forward(self, x, ctx):
        from ..kernels.pool import avgpool_forward

        self._x_shape = x.shape
        return avgpool_forward(x, self.size, self.stride, self.pads, self.out_hw)

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.pool import avgpool_backward

        return avgpool_backward(dy, self._x_shape, self.size, self.stride, self.pads)


class _GlobalPool(Layer):
    conv_like = False
    init_role = "stops"
    kernels = ("pool",)
    onnx_op = None

    def onnx(self, g, xs, w, prefix, out):
        # (N, C, H, W) -> (N, C, 1, 1) -> (N, C)
        return g.node("Flatten", [g.node(self.onnx_op, xs, f"{prefix}.pool")], out, axis=1)

    def output_shape(self, in_shape):
        if len(in_shape) != 3:
            raise LayerError(f"{self.kind} needs an h x w x channels input, got {fmt_shape(in_shape)}")
        return (in_shape[2],)

    def describe(self):
        return f"{self.in_shape[0]}×{self.in_shape[1]} → 1×1"

    def receptive(self):
        return self.in_shape[:2], (1, 1)


class GlobalAvgPool(_GlobalPool):
    kind = "globalavgpool"
    onnx_op = "GlobalAveragePool"

    def forward(self, x, ctx):
        from ..kernels.pool import global_avgpool_forward

        self._x_shape = x.shape
        return global_avgpool_forward(x)

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.pool import global_avgpool_backward

        return global_avgpool_backward(dy, self._x_shape)


class GlobalMaxPool(_GlobalPool):
    kind = "globalmaxpool"
    onnx_op = "GlobalMaxPool"

    def forward(self, x, ctx):
        from ..kernels.pool import global_maxpool_forward

        y, arg = global_maxpool_forward(x)
        self._cache = (arg, x.shape) if ctx.training or ctx.record else None
        return y

    def scratch_bytes(self, batch_size):
        return math.prod(self.out_shape) * 4  # int32 argmax

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.pool import global_maxpool_backward

        arg, x_shape = self._cache
        self._cache = None
        return global_maxpool_backward(dy, arg, x_shape)
