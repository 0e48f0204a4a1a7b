"""A cnncli Model -> the nodes and initializers of an ONNX graph; each layer emits its own nodes.

Feature maps are NCHW in ONNX (cnncli's checkpoint layout already is ONNX's: conv weight
(F, C/groups, FH, FW), dense weight (units, in_features), flatten in (c, h, w) order), so the
weights go in as they are, under their checkpoint names ('layers.<i>.weight').

    pixels (N, C, H, W) in [0, 1] -> (pixels - mean) / std -> layers... -> logits (N, K)
    probabilities = softmax(logits / T), or [1 - p, p] with p = sigmoid(logits / T) for a sigmoid head
    (T: the checkpoint's calibration temperature; with T = 1 no Div is written)

Padding is written out as cnncli computes it (layers/base.py resolve_padding), as ONNX `pads`
(top, left, bottom, right): TensorFlow's `same` with the odd row / column at the bottom / right.
"""

import numpy as np

from ..layers import FUNCTIONS
from ..model import INPUT


class Graph:
    """Nodes and initializers as they are emitted; every node is named after its output tensor.
    opset: the operator set being written (an activation decomposes where its op is newer)."""

    def __init__(self, helper, numpy_helper, opset):
        self.helper, self.numpy_helper, self.opset = helper, numpy_helper, opset
        self.nodes, self.initializers = [], []
        self._scalars = set()

    def const(self, name, array):
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def ints(self, name, values):
        """An int64 initializer (a Reshape's target shape)."""
        self.initializers.append(self.numpy_helper.from_array(np.asarray(values, np.int64), name))
        return name

    def scalar(self, name, value):
        """A float32 scalar initializer, written once however many nodes read it."""
        if name not in self._scalars:
            self._scalars.add(name)
            self.const(name, np.float32(value))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def activate(self, x, act, alpha, out):
        """x -> act(x) named out (layers/functions.py: each function's nodes); 'linear' adds
        nothing and returns x. softmax is over axis 1: the features of a vector, the channels
        of an NCHW map."""
        return FUNCTIONS[act].onnx(self, x, out, alpha, self.opset)


def build_graph(g, model, mean, std, logits=False, temperature=1.0):
    """Emit the whole network into g -> (output name, {layer index: output tensor name}).
    The input is 'pixels' (N, C, H, W) in [0, 1]; the output 'probabilities' (N, classes), or
    'logits' (N, K: the last layer before its softmax / sigmoid). Each layer emits its own
    nodes (Layer.onnx), and its fused activation follows. temperature T != 1 (a calibrated
    checkpoint): the probabilities are softmax(logits / T), a Div before the Softmax / Sigmoid."""
    c = model.input_shape[2]
    shape = (1, c, 1, 1)
    x = g.node("Div", [g.node("Sub", ["pixels", g.const("mean", np.reshape(mean, shape))], "centered"),
                       g.const("std", np.reshape(std, shape))], "normalized")
    outs = {INPUT: x}
    state = model.state_dict()
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        prefix = f"layers.{i}"
        w = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        xs = [outs[j] for j in model.sources[i]]
        if i == last:   # the head's softmax / sigmoid is applied below, as cnncli's predict_proba
            y = layer.onnx(g, xs, w, prefix, "logits")
            outs[i] = y if y == "logits" else g.node("Identity", [y], "logits")
            break
        act = layer.activation
        pre = prefix if act == "linear" else f"{prefix}.{layer.kind}"
        y = layer.onnx(g, xs, w, prefix, pre)
        outs[i] = g.activate(y, act, getattr(layer, "alpha", 0.01), prefix)
    if logits:
        return "logits", outs
    z = "logits" if temperature == 1.0 else g.node("Div", ["logits", g.scalar("temperature", temperature)], "scaled")
    if model.head == "softmax":
        return g.node("Softmax", [z], "probabilities", axis=1), outs
    if model.head == "multilabel":                              # (N, K): each label's own sigmoid
        return g.node("Sigmoid", [z], "probabilities"), outs
    p = g.node("Sigmoid", [z], "p")                      # (N, 1): class 1, the positive one
    q = g.node("Sub", [g.scalar("one", 1.0), "p"], "q")
    return g.node("Concat", [q, p], "probabilities", axis=1), outs  # (N, 2): [1 - p, p]
