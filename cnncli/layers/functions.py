"""The activation functions, one row each: the one place that names them.

Every other list is derived from FUNCTIONS: the names a config accepts (`activation:` of conv,
dense and add, and `- relu` as a layer of its own), He or Glorot initialisation, what backward
keeps, and the ONNX nodes. Each formula is PyTorch's; the kernels are kernels/activation.py.

  keeps   what the derivative is computed from: "output" (y alone gives it: nothing more is
          stored), "input" (the pre-activation z is kept beside y: hardswish, silu and gelu are
          not invertible from y) or "nothing" (linear)
  he      He initialisation (std sqrt(2 / fan_in)) for a layer followed by it, else Glorot
  onnx    (graph, x, out, alpha, opset) -> the name of the output tensor, opset 13 or newer
"""

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Function:
    name: str
    keeps: str
    he: bool
    onnx: Callable
    formula: str


def _op(op, **attrs):
    return lambda g, x, out, alpha, opset: g.node(op, [x], out, **attrs)


def _leaky(g, x, out, alpha, opset):
    return g.node("LeakyRelu", [x], out, alpha=float(alpha))


def _relu6(g, x, out, alpha, opset):
    return g.node("Clip", [x, g.scalar("zero", 0.0), g.scalar("six", 6.0)], out)


def _hardswish(g, x, out, alpha, opset):
    if opset >= 14:
        return g.node("HardSwish", [x], out)
    return g.node("Mul", [x, g.node("HardSigmoid", [x], f"{out}.gate", alpha=1 / 6, beta=0.5)], out)


def _silu(g, x, out, alpha, opset):
    return g.node("Mul", [x, g.node("Sigmoid", [x], f"{out}.sigmoid")], out)


def _gelu(g, x, out, alpha, opset):
    if opset >= 20:
        return g.node("Gelu", [x], out)
    # x / 2 (1 + erf(x / sqrt 2))
    e = g.node("Erf", [g.node("Mul", [x, g.scalar("inv_sqrt2", 1 / math.sqrt(2))], f"{out}.scaled")], f"{out}.erf")
    return _half_x_times(g, x, g.node("Add", [e, g.scalar("one", 1.0)], f"{out}.phi2"), out)


def _gelu_tanh(g, x, out, alpha, opset):
    if opset >= 20:
        return g.node("Gelu", [x], out, approximate="tanh")
    # x / 2 (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
    cube = g.node("Mul", [g.node("Mul", [x, x], f"{out}.x2"), x], f"{out}.x3")
    inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar("gelu_c", 0.044715)], f"{out}.cx3")], f"{out}.inner")
    t = g.node("Tanh", [g.node("Mul", [inner, g.scalar("sqrt_2_pi", math.sqrt(2 / math.pi))], f"{out}.u")],
               f"{out}.tanh")
    return _half_x_times(g, x, g.node("Add", [t, g.scalar("one", 1.0)], f"{out}.t1"), out)


def _half_x_times(g, x, factor, out):
    return g.node("Mul", [g.node("Mul", [x, g.scalar("half", 0.5)], f"{out}.half_x"), factor], out)


def _identity(g, x, out, alpha, opset):
    return x


FUNCTIONS = {f.name: f for f in (
    Function("linear", "nothing", False, _identity, "z"),
    Function("relu", "output", True, _op("Relu"), "max(z, 0)"),
    Function("leaky_relu", "output", True, _leaky, "z if z > 0 else alpha z (alpha in [0, 1))"),
    Function("relu6", "output", True, _relu6, "min(max(z, 0), 6)"),
    Function("sigmoid", "output", False, _op("Sigmoid"), "1 / (1 + e^-z)"),
    Function("hardsigmoid", "output", False, _op("HardSigmoid", alpha=1 / 6, beta=0.5), "relu6(z + 3) / 6"),
    Function("tanh", "output", False, _op("Tanh"), "tanh z"),
    Function("hardswish", "input", True, _hardswish, "z relu6(z + 3) / 6"),
    Function("silu", "input", True, _silu, "z sigmoid(z) (swish)"),
    Function("gelu", "input", True, _gelu, "z Phi(z) = z / 2 (1 + erf(z / sqrt 2))"),
    Function("gelu_tanh", "input", True, _gelu_tanh, "z / 2 (1 + tanh(sqrt(2 / pi) (z + 0.044715 z^3)))"),
    Function("softmax", "output", False, _op("Softmax", axis=1), "e^z_k / sum_j e^z_j over the last axis"),
)}
