"""ONNX graphs written with onnx.helper in the patterns PyTorch's exporter writes (torchvision's
MobileNetV2/V3, EfficientNet: ReLU6 as Clip, SiLU as x * Sigmoid(x), hardswish as
x * HardSigmoid(x), GELU through Erf, TensorFlow-`same` pads, ceil_mode pools, the flatten's
Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain, MatMul + Add), with random weights."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, array, name=None):
        name = name or f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op, inputs, **attrs):
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.n += 1
        out = f"/block{self.n}/{op}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"/block{self.n}/{op}", **attrs))
        return out

    def weight(self, *shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return self.const(self.rng.normal(0, np.sqrt(2 / fan_in), shape).astype(np.float32))

    def vector(self, n, low=-0.5, high=0.5):
        return self.const(self.rng.uniform(low, high, n).astype(np.float32))

    def model(self, x, out, channels=3, size=12, opset=17, batch="N"):
        graph = helper.make_graph(
            self.nodes, "pytorch_like",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, size, size])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, None])], self.inits)
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
        proto.ir_version = 8
        onnx.checker.check_model(proto)
        return proto


def pytorch_like(opset=17):
    """-> (ModelProto, the cnncli layer kinds it should become)."""
    b = Builder()
    x = b.op("Sub", ["input", b.const(np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1))])
    x = b.op("Div", [x, b.const(np.array([0.2, 0.25, 0.3], np.float32).reshape(1, 3, 1, 1))])
    # stride-2 3x3 on 12x12 with pads (top 0, left 0, bottom 1, right 1): TensorFlow's same
    x = b.op("Conv", [x, b.weight(8, 3, 3, 3)], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    x = b.op("BatchNormalization", [x, b.vector(8, 0.5, 1.5), b.vector(8), b.vector(8), b.vector(8, 0.5, 1.5)])
    x = b.op("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))])               # relu6
    x = b.op("Conv", [x, b.weight(8, 8, 1, 1), b.vector(8)], kernel_shape=[1, 1])
    x = b.op("Mul", [x, b.op("Sigmoid", [x])])                                         # silu
    y = b.op("Conv", [x, b.weight(8, 1, 3, 3)], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8)
    e = b.op("Erf", [b.op("Div", [y, b.const(np.float32(1.4142135381698608))])])     # PyTorch's GELU
    x = b.op("Mul", [b.op("Mul", [y, b.op("Add", [e, b.const(np.float32(1.0))])]), b.const(np.float32(0.5))])
    x = b.op("Mul", [x, b.const(np.full((8, 1, 1), 1.5, np.float32))])                # a per-channel affine
    x = b.op("Add", [x, b.const(np.linspace(-1, 1, 8).astype(np.float32).reshape(8, 1, 1))])
    x = b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])            # hardswish
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)       # 6x6 -> 3x3, not 2x2
    p = b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=0)
    q = b.op("LeakyRelu", [b.op("Conv", [x, b.weight(8, 8, 3, 3)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
             alpha=0.1)
    x = b.op("Concat", [b.op("Tanh", [p]), q], axis=1)
    x = b.op("Add", [x, b.op("Conv", [x, b.weight(16, 16, 1, 1)], kernel_shape=[1, 1])])
    x = b.op("GlobalAveragePool", [x])
    shape = b.op("Shape", [x])
    batch = b.op("Unsqueeze", [b.op("Gather", [shape, b.const(np.int64(0))], axis=0), b.const(np.array([0]))])
    x = b.op("Reshape", [x, b.op("Concat", [batch, b.const(np.array([-1]))], axis=0)])
    x = b.op("Relu", [b.op("Gemm", [x, b.weight(16, 12), b.vector(12)], alpha=0.5)])  # transB=0
    x = b.op("Add", [b.op("MatMul", [x, b.weight(12, 5)]), b.vector(5)])
    x = b.op("Softmax", [x], axis=1)
    kinds = [("conv", "linear"), ("batchnorm", None), ("activation", "relu6"), ("conv", "silu"), ("conv", "gelu"),
             ("batchnorm", None), ("activation", "hardswish"), ("maxpool", None), ("avgpool", None),
             ("conv", "leaky_relu"), ("activation", "tanh"), ("concat", None), ("conv", "linear"), ("add", "linear"),
             ("globalavgpool", None), ("dense", "relu"), ("dense", "softmax")]
    return b.model("input", x, opset=opset), kinds


def gated(opset=17):
    """Squeeze-and-excitation as torchvision's SqueezeExcitation exports it (`scale * input`):
    GlobalAveragePool -> 1x1 Conv -> SiLU / ReLU -> 1x1 Conv -> Sigmoid (EfficientNet-B0) or
    HardSigmoid (MobileNetV3) -> Mul with the map; the second block written map first.
    -> (ModelProto, the cnncli layer kinds it should become)."""
    b = Builder(seed=1)
    x = b.op("Conv", ["input", b.weight(8, 3, 3, 3), b.vector(8)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = b.op("Mul", [x, b.op("Sigmoid", [x])])
    h = b.op("Conv", [b.op("GlobalAveragePool", [x]), b.weight(2, 8, 1, 1), b.vector(2)], kernel_shape=[1, 1])
    h = b.op("Mul", [h, b.op("Sigmoid", [h])])
    s = b.op("Sigmoid", [b.op("Conv", [h, b.weight(8, 2, 1, 1), b.vector(8)], kernel_shape=[1, 1])])
    x = b.op("Mul", [s, x])
    x = b.op("Conv", [x, b.weight(8, 8, 1, 1)], kernel_shape=[1, 1])
    h = b.op("Relu", [b.op("Conv", [b.op("GlobalAveragePool", [x]), b.weight(4, 8, 1, 1), b.vector(4)],
                           kernel_shape=[1, 1])])
    s = b.op("HardSigmoid", [b.op("Conv", [h, b.weight(8, 4, 1, 1), b.vector(8)], kernel_shape=[1, 1])],
             alpha=1 / 6, beta=0.5)
    x = b.op("Mul", [x, s])
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    x = b.op("Gemm", [x, b.weight(5, 8), b.vector(5)], transB=1)
    kinds = [("conv", "silu"), ("globalavgpool", None), ("dense", "silu"), ("dense", "sigmoid"), ("scale", None),
             ("conv", "linear"), ("globalavgpool", None), ("dense", "relu"), ("dense", "hardsigmoid"),
             ("scale", None), ("globalavgpool", None), ("dense", "softmax")]
    return b.model("input", x, opset=opset), kinds


# --- padding, pooling windows and reductions, one case a graph (tests/test_import_windows.py) ------

def _ints(b, values):
    return b.const(np.array(values, np.int64))


WINDOWS = {   # name -> (opset, the case's nodes after a first conv, the cnncli kinds between it and the head)
    "Pad (input) into Conv": (13, lambda b, x: b.op("Conv", [b.op("Pad", [x, _ints(b, [0, 0, 1, 2, 0, 0, 0, 1])]),
                                                             b.weight(4, 4, 3, 3)], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                              ["conv"]),
    "Pad (attribute) into Conv": (10, lambda b, x: b.op("Conv", [b.op("Pad", [x], pads=[0, 0, 2, 0, 0, 0, 1, 3]),
                                                                 b.weight(4, 4, 3, 3)], kernel_shape=[3, 3]), ["conv"]),
    "Pad (axes) into Conv": (18, lambda b, x: b.op("Conv", [b.op("Pad", [x, _ints(b, [1, 0, 0, 2]), "", _ints(b, [2, 3])]),
                                                            b.weight(4, 4, 3, 3)], kernel_shape=[3, 3], strides=[2, 2]),
                             ["conv"]),
    "Pad, Pad into Conv": (13, lambda b, x: b.op("Conv", [b.op("Pad", [b.op("Pad", [x, _ints(b, [0, 0, 1, 0, 0, 0, 0, 0])]),
                                                                         _ints(b, [0, 0, 0, 0, 0, 0, 2, 1])]),
                                                                b.weight(4, 4, 2, 2)], kernel_shape=[2, 2]), ["conv"]),
    "Pad, then Add of a constant": (13, lambda b, x: b.op("Add", [b.op("Pad", [x, _ints(b, [0, 0, 1, 1, 0, 0, 1, 1])]),
                                                                 b.const(np.full((1, 4, 1, 1), 0.5, np.float32))]),
                                    ["pad", "batchnorm"]),
    "Pad then MaxPool": (13, lambda b, x: b.op("MaxPool", [b.op("Pad", [x, _ints(b, [0, 0, 1, 1, 0, 0, 1, 1])])],
                                               kernel_shape=[3, 3], strides=[2, 2]), ["pad", "maxpool"]),
    "Pad then AveragePool": (13, lambda b, x: b.op("AveragePool", [b.op("Pad", [x, _ints(b, [0, 0, 0, 1, 0, 0, 2, 0])])],
                                                   kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]),
                             ["pad", "avgpool"]),
    "Conv pads [0, 0, 1, 1], stride 1": (13, lambda b, x: b.op("Conv", [x, b.weight(4, 4, 3, 3)], kernel_shape=[3, 3],
                                                                pads=[0, 0, 1, 1]), ["conv"]),
    "Conv auto_pad SAME_UPPER": (13, lambda b, x: b.op("Conv", [x, b.weight(4, 4, 2, 2)], kernel_shape=[2, 2],
                                                       auto_pad="SAME_UPPER"), ["conv"]),
    "Conv auto_pad SAME_LOWER": (13, lambda b, x: b.op("Conv", [x, b.weight(4, 4, 4, 4)], kernel_shape=[4, 4],
                                                       strides=[2, 2], auto_pad="SAME_LOWER"), ["conv"]),
    "Conv auto_pad VALID": (13, lambda b, x: b.op("Conv", [x, b.weight(4, 4, 3, 3)], kernel_shape=[3, 3],
                                                  auto_pad="VALID", pads=None), ["conv"]),
    "MaxPool auto_pad SAME_LOWER": (13, lambda b, x: b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2],
                                                          auto_pad="SAME_LOWER"), ["maxpool"]),
    "AveragePool auto_pad SAME_UPPER": (13, lambda b, x: b.op("AveragePool", [x], kernel_shape=[2, 2],
                                                              auto_pad="SAME_UPPER"), ["avgpool"]),
    "MaxPool pads [1, 0, 0, 1]": (13, lambda b, x: b.op("MaxPool", [x], kernel_shape=[2, 3], strides=[2, 1],
                                                        pads=[1, 0, 0, 1]), ["maxpool"]),
    "MaxPool ceil_mode with pads": (13, lambda b, x: b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2],
                                                          pads=[1, 1, 1, 1], ceil_mode=1), ["maxpool"]),
    "AveragePool ceil_mode": (13, lambda b, x: b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2],
                                                    ceil_mode=1), ["avgpool"]),
    "AveragePool count_include_pad": (13, lambda b, x: b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2],
                                                            pads=[1, 0, 1, 0], count_include_pad=1), ["pad", "avgpool"]),
    "AveragePool count_include_pad, ceil_mode": (13, lambda b, x: b.op(
        "AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1, ceil_mode=1),
        ["pad", "avgpool"]),
    "ReduceMean keepdims 1, then Flatten": (13, lambda b, x: b.op("Flatten", [b.op("ReduceMean", [x], axes=[2, 3])]),
                                            ["globalavgpool"]),
    "ReduceMean keepdims 0": (13, lambda b, x: b.op("ReduceMean", [x], axes=[-1, -2], keepdims=0), ["globalavgpool"]),
    "ReduceMean axes as input (opset 18)": (18, lambda b, x: b.op("Reshape", [
        b.op("ReduceMean", [x, _ints(b, [2, 3])], keepdims=1), _ints(b, [0, -1])]), ["globalavgpool"]),
    "ReduceMax keepdims 1, then Squeeze": (13, lambda b, x: b.op("Squeeze", [
        b.op("ReduceMax", [x], axes=[2, 3]), _ints(b, [2, 3])]), ["globalmaxpool"]),
}


def windowed(name, seed=0):
    """Conv 3 -> 4 channels (values of both signs, so that a max over zeros and one over -inf
    differ), the case, Flatten, Gemm to 5 logits, on an 11x11 input.
    -> (ModelProto, the cnncli kinds it should become)."""
    opset, case, kinds = WINDOWS[name]
    b = Builder(seed)
    x = b.op("Conv", ["input", b.weight(4, 3, 3, 3), b.vector(4)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = case(b, x)
    graph = helper.make_graph(b.nodes, "w", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 11, 11])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], b.inits)
    shape = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    dims = [d.dim_value for d in shape.graph.output[0].type.tensor_type.shape.dim]
    if len(dims) > 2:
        y = b.op("Flatten", [y])
    y = b.op("Gemm", [y, b.weight(5, int(np.prod(dims[1:]))), b.vector(5)], transB=1)
    proto = b.model("input", y, size=11, opset=opset, batch=1)
    return proto, ["conv", *kinds, *(["flatten"] if len(dims) == 4 and kinds[-1] not in ("globalavgpool", "globalmaxpool") else []), "dense"]


# --- whole architectures as PyTorch's exporter writes them (small widths, 32x32, random weights) -----

def _act(b, x, act, opset):
    if act == "relu":
        return b.op("Relu", [x])
    if act == "relu6":      # F.relu6: Clip with min / max as inputs from opset 11
        return b.op("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))])
    if act == "hardswish":  # HardSwish from opset 14; before, x * HardSigmoid(x) (alpha 1/6)
        if opset >= 14:
            return b.op("HardSwish", [x])
        return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])
    if act == "silu":       # F.silu: x * Sigmoid(x)
        return b.op("Mul", [x, b.op("Sigmoid", [x])])
    return x


def _cba(b, x, cin, cout, k=3, s=1, g=1, act="relu", opset=17, bn=True, pad=None):
    """Conv2d (no bias) + BatchNorm2d + activation, as torchvision's Conv2dNormActivation."""
    p = k // 2 if pad is None else pad
    x = b.op("Conv", [x, b.weight(cout, cin // g, k, k)], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
             group=g, dilations=[1, 1])
    if bn:
        x = b.op("BatchNormalization", [x, b.vector(cout, 0.5, 1.5), b.vector(cout), b.vector(cout, -0.1, 0.1),
                                        b.vector(cout, 0.5, 1.5)], epsilon=1e-5, momentum=0.9)
    return _act(b, x, act, opset)


def _se(b, x, c, squeeze, act, gate, opset, reduce_mean=False):
    """SqueezeExcitation: pool -> 1x1 conv -> act -> 1x1 conv -> gate -> scale * input."""
    if reduce_mean:
        pooled = b.op("ReduceMean", [x, _ints(b, [2, 3])] if opset >= 18 else [x], keepdims=1,
                      **({} if opset >= 18 else {"axes": [2, 3]}))
    else:
        pooled = b.op("GlobalAveragePool", [x])
    h = _act(b, b.op("Conv", [pooled, b.weight(squeeze, c, 1, 1), b.vector(squeeze)], kernel_shape=[1, 1]), act, opset)
    s = b.op("Conv", [h, b.weight(c, squeeze, 1, 1), b.vector(c)], kernel_shape=[1, 1])
    s = b.op("Sigmoid", [s]) if gate == "sigmoid" else b.op("HardSigmoid", [s], alpha=1 / 6, beta=0.5)
    return b.op("Mul", [s, x])


def _head(b, x, c, classes=5, hidden=None, act="relu", opset=17):
    """Adaptive average pool to 1x1, flatten, (Linear + act,) Linear."""
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    if hidden:
        x = _act(b, b.op("Gemm", [x, b.weight(hidden, c), b.vector(hidden)], transB=1), act, opset)
        c = hidden
    return b.op("Gemm", [x, b.weight(classes, c), b.vector(classes)], alpha=1.0, beta=1.0, transB=1)


def _inverted(b, x, cin, cout, s, expand, k=3, act="relu6", se=None, opset=17):
    """MobileNetV2 / V3 / EfficientNet's inverted residual: expand 1x1, depthwise kxk, (SE,) project."""
    mid = cin * expand
    y = _cba(b, x, cin, mid, 1, act=act, opset=opset) if expand != 1 else x
    y = _cba(b, y, mid, mid, k, s, g=mid, act=act, opset=opset)
    if se:
        y = _se(b, y, mid, max(1, mid // 4), se[0], se[1], opset, *se[2:])
    y = _cba(b, y, mid, cout, 1, act=None, opset=opset)
    return b.op("Add", [y, x]) if s == 1 and cin == cout else y


def mobilenet_v2(b, opset):
    x = _cba(b, "input", 3, 8, 3, 2, act="relu6", opset=opset)
    for cin, cout, s, e in [(8, 8, 1, 1), (8, 12, 2, 6), (12, 12, 1, 6), (12, 16, 2, 6)]:
        x = _inverted(b, x, cin, cout, s, e, opset=opset)
    return _head(b, _cba(b, x, 16, 32, 1, act="relu6", opset=opset), 32)


def mobilenet_v3(b, opset):
    x = _cba(b, "input", 3, 8, 3, 2, act="hardswish", opset=opset)
    x = _inverted(b, x, 8, 8, 2, 1, act="relu", se=("relu", "hardsigmoid"), opset=opset)
    x = _inverted(b, x, 8, 12, 2, 4, act="relu", opset=opset)
    x = _inverted(b, x, 12, 12, 1, 3, k=5, act="hardswish", se=("relu", "hardsigmoid"), opset=opset)
    x = _cba(b, x, 12, 24, 1, act="hardswish", opset=opset)
    return _head(b, x, 24, hidden=32, act="hardswish", opset=opset)


def efficientnet_b0(b, opset):
    x = _cba(b, "input", 3, 8, 3, 2, act="silu", opset=opset)
    x = _inverted(b, x, 8, 8, 1, 1, act="silu", se=("silu", "sigmoid"), opset=opset)
    x = _inverted(b, x, 8, 12, 2, 6, k=5, act="silu", se=("silu", "sigmoid", True), opset=opset)
    x = _inverted(b, x, 12, 12, 1, 6, k=3, act="silu", se=("silu", "sigmoid", True), opset=opset)
    return _head(b, _cba(b, x, 12, 32, 1, act="silu", opset=opset), 32)


def resnet18(b, opset):
    x = _cba(b, "input", 3, 8, 7, 2, opset=opset)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=0)
    for cin, cout, s in [(8, 8, 1), (8, 16, 2)]:
        y = _cba(b, _cba(b, x, cin, cout, 3, s, opset=opset), cout, cout, 3, act=None, opset=opset)
        short = _cba(b, x, cin, cout, 1, s, act=None, opset=opset) if s != 1 else x
        x = b.op("Relu", [b.op("Add", [y, short])])
    return _head(b, x, 16)


def regnet(b, opset):
    """RegNetY: stem, X-blocks with grouped 3x3 (group width 4) and SE, projection shortcuts."""
    x = _cba(b, "input", 3, 8, 3, 2, opset=opset)
    for cin, cout, s in [(8, 16, 2), (16, 16, 1)]:
        y = _cba(b, x, cin, cout, 1, opset=opset)
        y = _cba(b, y, cout, cout, 3, s, g=cout // 4, opset=opset)
        y = _se(b, y, cout, cin // 4, "relu", "sigmoid", opset)
        y = _cba(b, y, cout, cout, 1, act=None, opset=opset)
        short = _cba(b, x, cin, cout, 1, s, act=None, opset=opset) if (s, cin) != (1, cout) else x
        x = b.op("Relu", [b.op("Add", [short, y])])
    return _head(b, x, 16)


def googlenet(b, opset):
    """Stem, ceil_mode max pools, inception modules: four branches joined by Concat."""
    x = _cba(b, "input", 3, 8, 7, 2, opset=opset, pad=3)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 16 -> 8 (7 without ceil)
    for cin in (8, 16):
        b1 = _cba(b, x, cin, 4, 1, opset=opset)
        b2 = _cba(b, _cba(b, x, cin, 4, 1, opset=opset), 4, 6, 3, opset=opset)
        b3 = _cba(b, _cba(b, x, cin, 2, 1, opset=opset), 2, 2, 3, opset=opset)
        b4 = _cba(b, b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], ceil_mode=1),
                  cin, 4, 1, opset=opset)
        x = b.op("Concat", [b1, b2, b3, b4], axis=1)
        if cin == 8:
            x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    return _head(b, x, 16)


ARCHITECTURES = {"mobilenet_v2": mobilenet_v2, "mobilenet_v3": mobilenet_v3, "efficientnet_b0": efficientnet_b0,
                 "resnet18": resnet18, "regnet": regnet, "googlenet": googlenet}


def architecture(name, opset=17, seed=0):
    """-> a ModelProto of the architecture, 3x32x32 in, 5 logits out."""
    b = Builder(seed)
    y = ARCHITECTURES[name](b, opset)
    return b.model("input", y, size=32, opset=opset, batch=1)


def padded_net(opset=13):
    """A network of every new padding form at once (for inspect, explain and training): an
    asymmetric conv pad, Pad before a max pool (a pad layer), an average counting its padding in
    (a pad layer), Pad folded into a strided conv, ReduceMean (keepdims 0) before the Gemm."""
    b = Builder(3)
    x = b.op("Relu", [b.op("Conv", ["input", b.weight(6, 3, 3, 3), b.vector(6)], kernel_shape=[3, 3], pads=[0, 0, 1, 1])])
    x = b.op("MaxPool", [b.op("Pad", [x, _ints(b, [0, 0, 1, 0, 0, 0, 0, 1])])], kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
    x = b.op("Conv", [b.op("Pad", [x, _ints(b, [0, 0, 1, 1, 0, 0, 0, 0])]), b.weight(8, 6, 3, 3)], kernel_shape=[3, 3],
             strides=[2, 2])
    x = b.op("ReduceMean", [b.op("Relu", [x])], axes=[2, 3], keepdims=0)
    x = b.op("Gemm", [x, b.weight(5, 8), b.vector(5)], transB=1)
    return b.model("input", x, size=16, opset=opset, batch=1)


def shufflenet_v2(b, opset):
    """ShuffleNetV2 units: stride 2 with two branches, stride 1 with the channel split
    (`x.chunk(2, dim=1)`: two Slice nodes, or one Split), Concat, then the channel shuffle."""
    x = _cba(b, "input", 3, 8, 3, 2, opset=opset)

    def shuffle(x, c):
        x = b.op("Reshape", [x, _ints(b, [1, 2, c // 2, 8, 8])])
        x = b.op("Transpose", [x], perm=[0, 2, 1, 3, 4])
        return b.op("Reshape", [x, _ints(b, [1, c, 8, 8])])

    left = _cba(b, _cba(b, x, 8, 8, 3, 2, g=8, act=None, opset=opset), 8, 8, 1, opset=opset)
    right = _cba(b, x, 8, 8, 1, opset=opset)
    right = _cba(b, _cba(b, right, 8, 8, 3, 2, g=8, act=None, opset=opset), 8, 8, 1, opset=opset)
    x = shuffle(b.op("Concat", [left, right], axis=1), 16)
    if opset >= 13:     # the TorchScript exporter's chunk: Slice with starts / ends / axes as inputs
        a = b.op("Slice", [x, _ints(b, [0]), _ints(b, [8]), _ints(b, [1])])
        c = b.op("Slice", [x, _ints(b, [8]), _ints(b, [16]), _ints(b, [1])])
    else:
        b.n += 1
        a, c = f"/block{b.n}/Split_output_0", f"/block{b.n}/Split_output_1"
        b.nodes.append(helper.make_node("Split", [x], [a, c], name=f"/block{b.n}/Split", axis=1, split=[8, 8]))
    c = _cba(b, _cba(b, _cba(b, c, 8, 8, 1, opset=opset), 8, 8, 3, g=8, act=None, opset=opset), 8, 8, 1, opset=opset)
    x = shuffle(b.op("Concat", [a, c], axis=1), 16)
    return _head(b, x, 16)


ARCHITECTURES["shufflenet_v2"] = shufflenet_v2


def densenet(b, opset):
    """DenseNet: BN-ReLU-Conv layers whose inputs are Concat of all before (the first a Concat of
    one input, as torch.cat([x], 1) exports), a transition with an average pool."""
    x = b.op("MaxPool", [_cba(b, "input", 3, 8, 7, 2, opset=opset, pad=3)], kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    feats, c = [x], 8
    for k in range(3):
        y = b.op("Concat", feats, axis=1)
        y = _cba(b, _act(b, _bn(b, y, c), "relu", opset), c, 8, 1, opset=opset)
        y = b.op("Conv", [y, b.weight(4, 8, 3, 3)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        feats.append(y)
        c += 4
        if k == 1:
            t = _cba(b, _act(b, _bn(b, b.op("Concat", feats, axis=1), c), "relu", opset), c, c // 2, 1, act=None,
                     opset=opset, bn=False)
            feats, c = [b.op("AveragePool", [t], kernel_shape=[2, 2], strides=[2, 2])], c // 2
    return _head(b, _act(b, _bn(b, b.op("Concat", feats, axis=1), c), "relu", opset), c)


def _bn(b, x, c):
    return b.op("BatchNormalization", [x, b.vector(c, 0.5, 1.5), b.vector(c), b.vector(c, -0.1, 0.1),
                                       b.vector(c, 0.5, 1.5)], epsilon=1e-5)


ARCHITECTURES["densenet"] = densenet
