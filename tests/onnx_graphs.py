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
