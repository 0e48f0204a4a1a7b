"""activation: a standalone non-linearity (relu, leaky_relu, sigmoid, tanh, softmax, linear).

Conv and dense layers take `activation:` directly; this layer is for orders such as
conv -> batchnorm -> relu, and for the softmax that ends a fully convolutional network.
"""

from .base import Layer, activation_name, alpha_arg


class Activation(Layer):
    kind = "activation"

    def __init__(self, fn="relu", alpha=0.01):
        super().__init__()
        self.activation = activation_name(fn, "fn")
        self.alpha = alpha_arg(alpha)

    def config(self):
        return {"fn": self.activation, "alpha": self.alpha}

    def describe(self):
        return self.activation

    def forward(self, x, training, record=False):
        from ..kernels.activation import activate

        y = activate(x.copy(), self.activation, self.alpha)
        self._y = y if training or record else None
        return y

    def backward(self, dy, need_dx=True):
        from ..kernels.activation import activation_grad

        return activation_grad(dy, self._y, self.activation, self.alpha)
