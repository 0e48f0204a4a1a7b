"""Layer types by the name used in YAML. Adding a type: one class, one kernel, one line here."""

from .activation import Activation
from .base import ACTIVATIONS, Layer, LayerError
from .batchnorm import BatchNorm
from .conv import Conv
from .dense import Dense
from .merge import Add, Concat
from .pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from .shape import Dropout, Flatten

LAYERS = {cls.kind: cls for cls in (Conv, MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool,
                                     Flatten, Dense, Dropout, BatchNorm, Activation, Add, Concat)}

# keys every layer takes besides its own arguments: the graph's wiring (see model/graph.py)
WIRING = ("from", "name")

# `- relu` is short for `- activation: relu`
ALIASES = {name: ("activation", {"fn": name}) for name in ACTIVATIONS}

__all__ = ["LAYERS", "ALIASES", "WIRING", "Layer", "LayerError", "ACTIVATIONS"]
