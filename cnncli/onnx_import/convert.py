"""The walk over the ONNX nodes: constants folded, element-wise runs recognised as cnncli
functions, every other node handed to its converter (ops.py), which emits cnncli layers.

A tensor is either a constant (a numpy array) or a Value: the output of an emitted layer (or the
network's input), with its cnncli shape, and a per-channel affine map y = (x - M) / S still
pending (Sub / Add / Mul / Div by constants). A pending map becomes, where a layer reads it: the
preprocessing (at the input), part of the batchnorm before it, the bias of the conv / dense
before it (a shift alone), or a batchnorm layer of its own.
"""

import re
from collections import Counter

import numpy as np

from ..model import INPUT
from . import functions
from .affine import realize
from .ops import CONVERTERS
from .constants import BATCH, fold
from .values import Emitted, Unsupported, Value


class Importer:
    def __init__(self, source, user_mean, user_std):
        self.src = source
        self.nodes = source.nodes
        self.consts = dict(source.initializers)
        h, w, c = source.shape
        self.values = {source.input: Value(INPUT, (h, w, c), tensor=source.input)}
        self.layers = []
        self.counts = Counter(source.head_ops)   # ONNX operators seen
        self.folded = Counter()        # what was folded away, by what it was
        self.user_mean, self.user_std = user_mean, user_std
        self.preprocessing = None      # (mean, std) on pixel / 255, once the input is read
        self.cnncli_export = source.proto.producer_name == "cnncli"
        self.readers = Counter(t for n in self.nodes for t in n.input if t)
        self.readers[source.logits] += 1

    # --- what the converters call ---
    def get(self, name, node, keep_pad=False):
        """A tensor: an array (constant) or a Value; zeros pending on a map (a Pad) become a pad
        layer here, unless the reader takes them into its own padding (keep_pad: a Conv)."""
        if name in self.consts:
            return self.consts[name]
        if name not in self.values:
            raise Unsupported(node, f"its input '{name}' comes from nothing cnncli could map")
        v = self.values[name]
        if v.pad is not None and not keep_pad:
            pads, base = v.pad, v.unpadded
            v = self.emit(v.pad_node, "pad", {"pads": list(pads)}, [base], v.shape, spatial_vector=False, out=name)
        return v

    def const(self, name, node, what):
        v = self.consts.get(name)
        if v is None:
            raise Unsupported(node, f"its {what} '{name}' is computed at run time; cnncli needs it constant")
        return v

    def value(self, name, node, keep_pad=False):
        v = self.get(name, node, keep_pad)
        if not isinstance(v, Value):
            raise Unsupported(node, f"its input '{name}' is a constant where a feature map was expected")
        return v

    def sealed(self, tensor):
        return self.cnncli_export and re.fullmatch(r"layers\.\d+", tensor) is not None

    def emit(self, node, kind, args, inputs, shape, weights=None, spatial_vector=False, out=None):
        """Append a layer reading the Values `inputs` -> its output Value, bound to node's output."""
        sources = [self.materialize(v, node) for v in inputs]
        out = out or node.output[0]
        name = _readable(node, out)
        self.layers.append(Emitted(kind, args, sources, name, weights or {}, out, self.sealed(out)))
        value = Value(len(self.layers) - 1, tuple(shape), spatial_vector, tensor=out, sealed=self.sealed(out))
        self.values[out] = value
        return value

    def alias(self, node, value, what=None):
        self.values[node.output[0]] = value
        if what:
            self.folded[what] += 1

    def materialize(self, v, node):
        """A Value's pending affine map made real -> the index a layer reads (INPUT or a layer)."""
        if v.shuffle is not None:
            raise Unsupported(node, "it reads a channel shuffle half done (a 5-D reshape of a feature "
                              "map); cnncli maps Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), "
                              "Reshape (N, C, H, W) as a whole")
        if v.mean is None and v.layer != INPUT:
            return v.layer
        if v.done is None:
            v.done = realize(self, v, node)
        return v.done

    # --- the walk ---
    def run(self):
        done = set()
        for i, node in enumerate(self.nodes):
            if i in done:
                continue
            self.counts[node.op_type] += 1
            if self._fold(node):
                continue
            run = functions.region_at(i, self.nodes, self._scalar, self._consumers, self.sealed)
            if run is not None and all(j not in done for j in run[4]) and run[2] in self.values:
                self._activation(node, run, done)
                continue
            converter = CONVERTERS.get(node.op_type)
            if converter is None:
                raise Unsupported(node, _why_not(node.op_type))
            converter(self, node)
        return self

    def _fold(self, node):
        inputs = [t for t in node.input if t]
        if node.op_type == "Shape" and node.input[0] in self.values:
            v = self.values[node.input[0]]
            self.consts[node.output[0]] = np.array([BATCH, *v.onnx_shape], np.int64)
        elif all(t in self.consts for t in inputs) and node.op_type not in ("Conv", "Gemm", "MatMul"):
            try:
                out = fold(node, [self.consts.get(t) if t else None for t in node.input], self.src.opset)
            except Exception as e:
                raise Unsupported(node, f"folding its constant inputs failed: {e}") from None
            if out is None:
                return False
            self.consts[node.output[0]] = out
        else:
            return False
        self.folded["constant " + node.op_type] += 1
        return True

    def _scalar(self, name):
        v = self.consts.get(name)
        return None if v is None or v.size != 1 or v.dtype.kind not in "fiu" else float(v.ravel()[0])

    def _consumers(self, name):
        return self.readers[name] + (name == self.src.logits)

    def _activation(self, node, run, done):
        fn, alpha, x, out, members = run
        for j in members[1:]:
            self.counts[self.nodes[j].op_type] += 1
        done.update(members)
        v = self.value(x, node)
        if fn == "linear":
            self.alias(self.nodes[members[-1]], v, "identity arithmetic")
            self.values[out] = v
            return
        args = {"fn": fn} if fn != "leaky_relu" else {"fn": fn, "alpha": alpha}
        self.emit(node, "activation", args, [v], v.shape, spatial_vector=v.spatial_vector, out=out)


def _readable(node, tensor):
    """A layer name from the node: PyTorch's '/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1'
    (its last module path), else the node's name or its output's."""
    name = node.name or tensor
    parts = [p for p in name.split("/") if p]
    if len(parts) > 1 and parts[-1].split("_")[0] in (node.op_type, node.op_type + "Op"):
        parts = parts[:-1]
    name = parts[-1] if len(parts) > 1 and "." in parts[-1] else "/".join(parts)
    return name if name and name != "input" else tensor


WHY = {
    "Resize": "resizing inside the network is not a classifier layer cnncli has",
    "Upsample": "resizing inside the network is not a classifier layer cnncli has",
}


def _why_not(op):
    return WHY.get(op, "no cnncli layer computes it")
