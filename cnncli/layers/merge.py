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

    def forward(self, xs, training, record=False):
        from ..kernels.activation import added

        y = added(xs, self.activation, self.alpha)
        self._y = y if training or record else None
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.activation import activation_grad

        dz = activation_grad(dy, self._y, self.activation, self.alpha)
        self._y = None
        return [dz] * len(self.in_shape) if need_dx else None


class Concat(Layer):
    """Join along channels (feature maps of one height and width) or along features (vectors),
    in the order of `from`."""

    kind = "concat"
    n_inputs = None

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

    def forward(self, xs, training, record=False):
        return np.concatenate(xs, axis=-1)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        ends = np.cumsum([s[-1] for s in self.in_shape])[:-1]
        return [np.ascontiguousarray(d) for d in np.split(dy, ends, axis=-1)]
