"""What the walk over the ONNX nodes holds: a Value per non-constant tensor, an Emitted record per
cnncli layer made, and the one error for a node cnncli cannot map."""

from dataclasses import dataclass, field

import numpy as np

from ..errors import CnnError


class Unsupported(CnnError):
    """A node cnncli cannot map: one line naming it, its operator and why."""

    def __init__(self, node, why):
        super().__init__(f"node '{node.name or node.output[0]}': {node.op_type} is not an operator cnncli "
                         f"supports as a classifier layer ({why})")


@dataclass
class Value:
    layer: int               # the emitted layer's index, or INPUT
    shape: tuple             # cnncli's per-image shape: (h, w, c) or (d,)
    spatial_vector: bool = False   # a (d,) vector that ONNX holds as (d, 1, 1) (after a global pool)
    mean: np.ndarray = None  # pending y = (x - mean) / std per channel, float64; None: nothing pending
    std: np.ndarray = None
    tensor: str = ""         # the ONNX tensor the layer's output first was
    sealed: bool = False     # a layer boundary of a cnncli export: no activation fuses across it
    done: int = None         # the pending map, made into a layer: that layer's index
    shuffle: tuple = None    # halfway through a channel shuffle: ("split", g) after the Reshape to
    #                          (N, g, c/g, H, W), ("across", g) after the Transpose; only the rest of it may read it
    pad: tuple = None        # zeros pending around the map (top, bottom, left, right): a Conv folds them,
    #                          any other reader gets a pad layer first (Importer.get)
    unpadded: "Value" = None  # with pad: the Value the zeros surround
    pad_node: object = None  # with pad: the Pad node (names the pad layer)

    @property
    def onnx_shape(self):
        """Without the batch axis: (C, H, W), (D,) or (D, 1, 1)."""
        if len(self.shape) == 3:
            h, w, c = self.shape
            return (c, h, w)
        return (self.shape[0], 1, 1) if self.spatial_vector else self.shape

    @property
    def channels(self):
        return self.shape[-1]

    def with_affine(self, mean, std):
        return Value(self.layer, self.shape, self.spatial_vector, mean, std, self.tensor, self.sealed)


@dataclass
class Emitted:
    kind: str
    args: dict
    sources: list            # layer indices, INPUT for the network's input
    name: str
    weights: dict = field(default_factory=dict)   # checkpoint names -> arrays (boundary layout)
    tensor: str = ""
    sealed: bool = False
