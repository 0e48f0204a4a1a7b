"""activation: a standalone non-linearity (any of functions.FUNCTIONS: relu, relu6, silu, ...).

Conv, dense and add layers take `activation:` directly; this layer is for orders such as
conv -> batchnorm -> relu, and for the softmax that ends a fully convolutional network.
"""

from .base import Layer, activation_name, alpha_arg
from .functions import FUNCTIONS


class Activation(Layer):
    kind = "activation"
    activation_key = "fn"
    conv_like = True          # a conv -> batchnorm -> relu block's output
    init_role = "supplies"
    kernels = ("activation",)

    def __init__(self, fn="relu", alpha=0.01):
        super().__init__()
        self.activation = activation_name(fn, "fn")
        self.alpha = alpha_arg(alpha)
        self._kept = None
        self._applied = False     # the batchnorm before it applied it (Model.forward); its backward takes it

    def config(self):
        return {"fn": self.activation, "alpha": self.alpha}

    def describe(self):
        return self.activation

    def onnx(self, g, xs, w, prefix, out):
        return xs[0]          # the function itself is added after, as for any fused activation

    @property
    def keeps_input(self):
        """A function whose derivative needs z keeps its input (no array of its own)."""
        return FUNCTIONS[self.activation].keeps == "input"

    def activation_bytes(self):
        return 0              # what it keeps is its input or its output: counted as such

    def standalone_function(self):
        return self.activation, self.alpha

    def forward(self, x, ctx):
        from ..kernels.activation import activated

        y = activated(x, self.activation, self.alpha)
        self._kept, self._applied = None, False
        if ctx.training or ctx.record:
            self._kept = x if self.kernel_activation(ctx) != self.activation else y
        return y

    def applied(self, y, ctx):
        """The layer before applied this activation already (batchnorm's `then`): y is this
        layer's output; keep it as forward would (only for functions whose derivative needs y)."""
        assert not self.keeps_input
        self._kept = y if ctx.training or ctx.record else None
        self._applied = self._kept is not None
        return y

    def handed_over(self):
        """-> (function, alpha) for the batchnorm that applied this activation, whose backward
        then takes its derivative too, recomputing the output (Model.backward); None where this
        layer's forward ran itself. Forgets its output either way."""
        self._kept = None
        applied, self._applied = self._applied, False
        return (self.activation, self.alpha) if applied else None

    def backward(self, dy, ctx, need_dx=True):
        from ..kernels.activation import activation_grad

        kept, self._kept = self._kept, None
        return activation_grad(dy, kept, self.activation, self.alpha, split=True)
