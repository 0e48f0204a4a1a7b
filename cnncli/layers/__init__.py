"""Layer types by the name used in YAML. Adding a type: one class (its kernels, its ONNX nodes
and its per-kind answers: base.Layer), one line here, its cases in the tests, its row in
docs/layers.md. Adding an activation function: one row in functions.FUNCTIONS and its formula
in kernels/activation.py."""

from .activation import Activation
from .base import ACTIVATIONS, Layer, LayerError
from .batchnorm import BatchNorm
from .channels import LRN, Shuffle, Slice
from .context import Context
from .conv import Conv
from .dense import Dense
from .functions import FUNCTIONS
from .merge import Add, Concat, Scale
from .pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from .shape import Dropout, Flatten, Pad

LAYERS = {cls.kind: cls for cls in (Conv, MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool,
                                     Flatten, Dense, Dropout, BatchNorm, Activation, Add, Concat,
                                     LRN, Shuffle, Scale, Pad, Slice)}

# keys every layer takes besides its own arguments: the graph's wiring (see model/graph.py)
WIRING = ("from", "name")

# `- relu` is short for `- activation: relu`
ALIASES = {name: ("activation", {"fn": name}) for name in ACTIVATIONS}


def kernel_modules():
    """The kernel modules (cnncli/kernels/<name>.py) the layer kinds run, each named once."""
    return sorted({name for cls in LAYERS.values() for name in cls.kernels})


__all__ = ["LAYERS", "ALIASES", "WIRING", "Layer", "LayerError", "ACTIVATIONS", "FUNCTIONS", "Context",
           "kernel_modules"]
