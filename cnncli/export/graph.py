"""A cnncli Model -> the nodes and initializers of an ONNX graph, one emitter per layer kind.

Feature maps are NCHW in ONNX (cnncli's checkpoint layout already is ONNX's: conv weight
(F, C/groups, FH, FW), dense weight (units, in_features), flatten in (c, h, w) order), so the
weights go in as they are, under their checkpoint names ('layers.<i>.weight').

    pixels (N, C, H, W) in [0, 1] -> (pixels - mean) / std -> layers... -> logits (N, K)
    probabilities = softmax(logits), or [1 - p, p] with p = sigmoid(logits) for a sigmoid head

Padding is written out as cnncli computes it (layers/base.py resolve_padding), as ONNX `pads`
(top, left, bottom, right): TensorFlow's `same` with the odd row / column at the bottom / right.
"""

import numpy as np

from ..model import INPUT

# the activation ops; softmax is over axis 1: the features of a vector, the channels of an NCHW map
ACTIVATION_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "sigmoid": "Sigmoid", "tanh": "Tanh",
                  "softmax": "Softmax"}


class Graph:
    """Nodes and initializers as they are emitted; every node is named after its output tensor."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []

    def const(self, name, array):
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def activate(self, x, act, alpha, out):
        """x -> act(x) named out; 'linear' adds nothing and returns x."""
        if act == "linear":
            return x
        attrs = {"alpha": float(alpha)} if act == "leaky_relu" else {"axis": 1} if act == "softmax" else {}
        return self.node(ACTIVATION_OPS[act], [x], out, **attrs)


def onnx_pads(pads):
    """cnncli (top, bottom, left, right) -> ONNX (top, left, bottom, right)."""
    top, bottom, left, right = pads
    return [top, left, bottom, right]


# --- one emitter per layer kind: (graph, layer, input names, weights, prefix, out) -> output name ----
# `prefix` is 'layers.<i>' (the checkpoint's key prefix); `out` the name the result should take.

def conv(g, layer, xs, w, prefix, out):
    inputs = [xs[0], g.const(f"{prefix}.weight", w["weight"])]
    if layer.bias:
        inputs.append(g.const(f"{prefix}.bias", w["bias"]))
    return g.node("Conv", inputs, out, kernel_shape=list(layer.size), strides=list(layer.stride),
                  pads=onnx_pads(layer.pads), group=layer.groups)


def pool(g, layer, xs, w, prefix, out):
    attrs = dict(kernel_shape=list(layer.size), strides=list(layer.stride), pads=onnx_pads(layer.pads))
    if layer.kind == "avgpool":   # the mean over the real cells under the window, as cnncli
        return g.node("AveragePool", xs, out, count_include_pad=0, **attrs)
    return g.node("MaxPool", xs, out, **attrs)  # a padded cell is never the maximum


def global_pool(g, layer, xs, w, prefix, out):
    # (N, C, H, W) -> (N, C, 1, 1) -> (N, C)
    op = "GlobalAveragePool" if layer.kind == "globalavgpool" else "GlobalMaxPool"
    return g.node("Flatten", [g.node(op, xs, f"{prefix}.pool")], out, axis=1)


def flatten(g, layer, xs, w, prefix, out):
    # (N, C, H, W) -> (N, C*H*W): (c, h, w) order, as cnncli's flatten and its dense weights
    return g.node("Flatten", xs, out, axis=1) if len(layer.in_shape) == 3 else xs[0]


def dense(g, layer, xs, w, prefix, out):
    inputs = [xs[0], g.const(f"{prefix}.weight", w["weight"])]
    if layer.bias:
        inputs.append(g.const(f"{prefix}.bias", w["bias"]))
    return g.node("Gemm", inputs, out, transB=1)  # x W^T + b


def batchnorm(g, layer, xs, w, prefix, out):
    # inference form: weight * (x - running_mean) / sqrt(running_var + eps) + bias, per channel (axis 1)
    names = [g.const(f"{prefix}.{k}", w[k]) for k in ("weight", "bias", "running_mean", "running_var")]
    return g.node("BatchNormalization", [xs[0], *names], out, epsilon=layer.eps)


def passthrough(g, layer, xs, w, prefix, out):
    """dropout at inference, and the standalone activation (its function is added after)."""
    return xs[0]


def add(g, layer, xs, w, prefix, out):
    # ((x1 + x2) + x3) + ...: cnncli's order of additions
    y = g.node("Add", xs[:2], out if len(xs) == 2 else f"{prefix}.sum1")
    for k, x in enumerate(xs[2:], start=2):
        y = g.node("Add", [y, x], out if k == len(xs) - 1 else f"{prefix}.sum{k}")
    return y


def concat(g, layer, xs, w, prefix, out):
    return g.node("Concat", xs, out, axis=1)  # the channels of maps, or the features of vectors


EMITTERS = {"conv": conv, "maxpool": pool, "avgpool": pool, "globalavgpool": global_pool,
            "globalmaxpool": global_pool, "flatten": flatten, "dense": dense, "dropout": passthrough,
            "batchnorm": batchnorm, "activation": passthrough, "add": add, "concat": concat}


def build_graph(g, model, mean, std, logits=False):
    """Emit the whole network into g -> (output name, {layer index: output tensor name}).
    The input is 'pixels' (N, C, H, W) in [0, 1]; the output 'probabilities' (N, classes), or
    'logits' (N, K: the last layer before its softmax / sigmoid)."""
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
        act = getattr(layer, "activation", "linear")
        if i == last:   # the head's softmax / sigmoid is applied below, as cnncli's predict_proba
            y = EMITTERS[layer.kind](g, layer, xs, w, prefix, "logits")
            outs[i] = y if y == "logits" else g.node("Identity", [y], "logits")
            break
        pre = prefix if act == "linear" else f"{prefix}.{layer.kind}"
        y = EMITTERS[layer.kind](g, layer, xs, w, prefix, pre)
        outs[i] = g.activate(y, act, getattr(layer, "alpha", 0.01), prefix)
    if logits:
        return "logits", outs
    if model.head == "softmax":
        return g.node("Softmax", ["logits"], "probabilities", axis=1), outs
    p = g.node("Sigmoid", ["logits"], "p")                      # (N, 1): class 1, the positive one
    q = g.node("Sub", [g.const("one", np.ones((), np.float32)), "p"], "q")
    return g.node("Concat", [q, p], "probabilities", axis=1), outs  # (N, 2): [1 - p, p]
