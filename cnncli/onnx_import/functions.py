"""Element-wise activations however an exporter spells them: a run of element-wise nodes over one
tensor (with scalar constants) is evaluated on test points and compared with each of cnncli's
functions (layers/functions.py, computed by cnncli's own kernel). So `x * Sigmoid(x)`, PyTorch's
`x * 0.5 * (1 + Erf(x / 1.4142))`, cnncli's own decomposed GELU, `Clip(x, 0, 6)` and
`x * HardSigmoid(x)` are recognised by what they compute, not by the order of their nodes."""

import math

import numpy as np

from ..layers import FUNCTIONS
from .constants import attr

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _clip(node, args):
    lo = args[1] if len(args) > 1 and args[1] is not None else attr(node, "min", -np.inf)
    hi = args[2] if len(args) > 2 and args[2] is not None else attr(node, "max", np.inf)
    return np.clip(args[0], lo, hi)


def _hardsigmoid(node, x):
    return np.clip(attr(node, "alpha", 0.2) * x + attr(node, "beta", 0.5), 0, 1)


def _gelu(node, x):
    if attr(node, "approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


# op -> (node, [x or constant, ...]) -> float64 array; what each computes, from the ONNX spec
ELEMENTWISE = {
    "Relu": lambda n, a: np.maximum(a[0], 0),
    "LeakyRelu": lambda n, a: np.where(a[0] >= 0, a[0], attr(n, "alpha", 0.01) * a[0]),
    "Sigmoid": lambda n, a: 1 / (1 + np.exp(-a[0])),
    "Tanh": lambda n, a: np.tanh(a[0]),
    "HardSigmoid": lambda n, a: _hardsigmoid(n, a[0]),
    "HardSwish": lambda n, a: a[0] * np.clip(a[0] / 6 + 0.5, 0, 1),
    "Clip": _clip,
    "Erf": lambda n, a: _erf(a[0]),
    "Gelu": lambda n, a: _gelu(n, a[0]),
    "Neg": lambda n, a: -a[0],
    "Add": lambda n, a: a[0] + a[1],
    "Sub": lambda n, a: a[0] - a[1],
    "Mul": lambda n, a: a[0] * a[1],
    "Div": lambda n, a: a[0] / a[1],
    "Pow": lambda n, a: np.power(a[0], a[1]),
}
MAX_NODES = 12      # the longest spelling met: GELU-tanh written out is 9 nodes
POINTS = np.concatenate([np.linspace(-8, 8, 321), [-3, -1, -0.5, 0, 0.5, 1, 3, 6, 6.5]])


def region_at(start, nodes, constant, consumers, sealed):
    """The activation computed by the longest run of element-wise nodes beginning at nodes[start]
    over one tensor x -> (function, alpha, x, output, the run's node indices), or None.
    constant(name): a scalar constant's value, or None; consumers(name): how many nodes (and graph
    outputs) read it; sealed(name): a layer boundary that no activation may reach across."""
    node = nodes[start]
    if node.op_type not in ELEMENTWISE:
        return None
    tensors = [t for t in node.input if t and constant(t) is None]
    if len(set(tensors)) != 1:
        return None
    x = tensors[0]
    inside, produced, best = [], {x}, None
    for i in range(start, min(len(nodes), start + 4 * MAX_NODES)):
        n = nodes[i]
        if n.op_type not in ELEMENTWISE or len(inside) >= MAX_NODES:
            continue
        ins = [t for t in n.input if t]
        if not ins or any(t not in produced and constant(t) is None for t in ins):
            continue
        if i != start and not any(t in produced for t in ins):
            continue
        if any(t in produced and t != x and sealed(t) for t in ins):
            continue
        inside.append(i)
        produced.add(n.output[0])
        exit_ = _single_exit(nodes, inside, consumers)
        if exit_ is not None:
            found = _match(_evaluate(nodes, inside, x, constant, exit_))
            if found is not None:
                best = (found[0], found[1], x, exit_, list(inside))
    return best


def _single_exit(nodes, inside, consumers):
    """The one tensor of the run read from outside it, or None."""
    inner = {}
    for i in inside:
        for t in nodes[i].input:
            inner[t] = inner.get(t, 0) + 1
    outs = [t for t in (nodes[i].output[0] for i in inside) if consumers(t) > inner.get(t, 0)]
    return outs[0] if len(outs) == 1 else None


def _evaluate(nodes, inside, x, constant, out):
    values = {x: POINTS.copy()}
    for i in inside:
        n = nodes[i]
        args = [values[t] if t in values else (None if not t else np.float64(constant(t))) for t in n.input]
        values[n.output[0]] = np.asarray(ELEMENTWISE[n.op_type](n, args), np.float64)
    return values[out]


def _match(y):
    """-> (function name, alpha) of cnncli's function that computes y on POINTS, or None."""
    from ..kernels.activation import activate

    if not np.all(np.isfinite(y)):
        return None
    if np.allclose(y, POINTS, rtol=1e-6, atol=1e-7):
        return "linear", 0.01
    slope = float(str(np.float32(-y[POINTS == -1][0])))
    for name in FUNCTIONS:
        if name in ("linear", "softmax"):
            continue
        alpha = slope if name == "leaky_relu" else 0.01
        if name == "leaky_relu" and not 0 <= alpha < 1:
            continue
        want = activate(POINTS.astype(np.float32).reshape(1, -1), name, alpha).astype(np.float64)[0]
        if np.allclose(y, want, rtol=2e-6, atol=2e-6):
            return name, alpha
    return None
