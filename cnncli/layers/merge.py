"""add and concat: the layers that join branches of a graph (ResNet shortcuts, Inception-style
branches). Each reads two or more earlier outputs, named by `from:` in the architecture."""

import numpy as np

from .base import Layer, LayerError, activation_name, alpha_arg, fmt_shape


def _shapes(in_shapes):
    return ", ".join(fmt_shape(s) for s in in_shapes)


class Add(Layer):
    """y = act(x_1 + x_2 + ... + x_k), inputs of one shape; dL/dx_i = act'(y) dL/dy for every i."""

    kind = "add"
    n_inputs = None
    activation_key = "activation"
    conv_like = True          # a residual block's output
    init_role = "supplies"
    kernels = ("activation",)

    def __init__(self, activation=None, alpha=0.01):
        super().__init__()
        self.activation = activation_name(activation)
        self.alpha = alpha_arg(alpha)

    def config(self):
        return {"activation": self.activation, "alpha": self.alpha}

    def output_shape(self, in_shapes):
        if any(s != in_shapes[0] for s in in_shapes):
            raise LayerError(f"add needs inputs of one shape, got {_shapes(in_shapes)}: match them "
                             "(a 1x1 conv with the right filters and stride on the shortcut)", "from")
        return in_shapes[0]

    def describe(self):
        return f"{len(self.in_shape)} inputs"

    def onnx(self, g, xs, w, prefix, out):
        # ((x1 + x2) + x3) + ...: cnncli's order of additions
        y = g.node("Add", xs[:2], out if len(xs) == 2 else f"{prefix}.sum1")
        for k, x in enumerate(xs[2:], start=2):
            y = g.node("Add", [y, x], out if k == len(xs) - 1 else f"{prefix}.sum{k}")
        return y

    def forward(self, xs, ctx):
        from ..kernels.activation import added

        y, kept = self.finish_activation(added(xs, self.kernel_activation(ctx), self.alpha), ctx)
        self._kept = kept if ctx.training or ctx.record else None
        return y

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.activation import activation_grad

        kept, self._kept = self._kept, None
        dz = activation_grad(dy, kept, self.activation, self.alpha, split=True)
        return [dz] * len(self.in_shape) if need_dx else None


class Concat(Layer):
    """Join along channels (feature maps of one height and width) or along features (vectors),
    in the order of `from`."""

    kind = "concat"
    n_inputs = None
    conv_like = True          # an Inception block's output
    init_role = "stops"
    kernels = ()

    def output_shape(self, in_shapes):
        ranks = {len(s) for s in in_shapes}
        if ranks == {1}:
            return (sum(s[0] for s in in_shapes),)
        if ranks == {3} and len({s[:2] for s in in_shapes}) == 1:
            return in_shapes[0][:2] + (sum(s[2] for s in in_shapes),)
        raise LayerError(f"concat joins feature maps of one height and width, or flat vectors; got "
                         f"{_shapes(in_shapes)}", "from")

    def describe(self):
        return " + ".join(str(s[-1]) for s in self.in_shape) + (" channels" if len(self.out_shape) == 3 else "")

    def onnx(self, g, xs, w, prefix, out):
        return g.node("Concat", xs, out, axis=1)  # the channels of maps, or the features of vectors

    def forward(self, xs, ctx):
        return np.concatenate(xs, axis=-1)

    def backward(self, dy, ctx, need_dx=True):
        if not need_dx:
            return None
        ends = np.cumsum([s[-1] for s in self.in_shape])[:-1]
        return [np.ascontiguousarray(d) for d in np.split(dy, ends, axis=-1)]


class Scale(Layer):
    """A gate (squeeze-and-excitation): y = x * s, x a map (h, w, c) or a vector (c,), s a vector
    (c,) broadcast over h and w; dL/dx = s dL/dy, dL/ds = sum over h, w of x dL/dy."""

    kind = "scale"
    n_inputs = None
    conv_like = True          # a gated block's output: features of the image
    init_role = "stops"
    kernels = ()
    keeps_input = True        # d(x s) needs both

    def output_shape(self, in_shapes):
        if len(in_shapes) != 2 or in_shapes[1] != (in_shapes[0][-1],):
            raise LayerError(f"scale takes a map or vector and then one gate value per channel, got "
                             f"{_shapes(in_shapes)}", "from")
        return in_shapes[0]

    def describe(self):
        return f"{self.in_shape[0][-1]} channels gated"

    def onnx(self, g, xs, w, prefix, out):
        x, s = xs
        if len(self.in_shape[0]) == 3:   # the gate (N, C) -> (N, C, 1, 1), broadcast over H, W
            s = g.node("Reshape", [s, g.ints(f"{prefix}.gate_shape", [0, -1, 1, 1])], f"{prefix}.gate")
        return g.node("Mul", [x, s], out)

    def _gate(self, s, x):
        return s.reshape(s.shape[:1] + (1,) * (x.ndim - 2) + s.shape[1:])    # (N, C) -> (N, 1, 1, C)

    def forward(self, xs, ctx):
        x, s = xs
        self._cache = (x, s) if ctx.training or ctx.record else None
        return x * self._gate(s, x)

    def backward(self, dy, ctx, need_dx=True):
        x, s = self._cache
        self._cache = None
        if not need_dx:
            return None
        ds = (dy * x).reshape(x.shape[0], -1, x.shape[-1]).sum(axis=1)
        return [dy * self._gate(s, x), ds]
