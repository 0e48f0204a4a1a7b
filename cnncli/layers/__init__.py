"""Layer types by the name used in YAML. Adding a type: one class, one kernel, one line here."""

from .activation import Activation
from .base import ACTIVATIONS, Layer, LayerError
from .batchnorm import BatchNorm
from .conv import Conv
from .dense import Dense
from .pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from .shape import Dropout, Flatten

LAYERS = {cls.kind: cls for cls in (Conv, MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool,
                                     Flatten, Dense, Dropout, BatchNorm, Activation)}

# `- relu` is short for `- activation: relu`
ALIASES = {name: ("activation", {"fn": name}) for name in ACTIVATIONS}

__all__ = ["LAYERS", "ALIASES", "Layer", "LayerError", "ACTIVATIONS"]
