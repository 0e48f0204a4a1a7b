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
