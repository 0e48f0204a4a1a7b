"""Per-channel affine maps y = (x - M) / S by constants (Sub / Add / Mul / Div whose other side
is a scalar or one value per channel): collected on a Value (convert.py) and made real where a
layer reads them, in the cheapest exact form:

  at the network's input          the preprocessing: mean and std on pixel / 255
  after a batchnorm read only here  folded into it: weight / S, (bias - M) / S
  a shift alone after conv / dense  its bias: bias - M
  anywhere else                    a batchnorm layer: weight 1 / S, bias -M / S, running
                                   statistics 0 and 1 - eps (so that sqrt(var + eps) = 1)
"""

import inspect

import numpy as np

from ..layers import LAYERS
from ..model import INPUT
from .values import Unsupported

EPS = 1e-5


def channel_vector(const, value):
    """A constant that broadcasts over `value` one number per channel (or one in all) -> float64
    (channels,), else None."""
    c = value.channels
    a = np.asarray(const, np.float64)
    if a.ndim > len(value.onnx_shape) + 1:
        return None
    rank = len(value.onnx_shape)
    shape = (1,) * (rank + 1 - a.ndim) + a.shape      # aligned to (N, C, ...) from the right
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, c):
        return None
    return np.broadcast_to(a.reshape(-1), (c,)).copy()


def compose(value, op, vector, const_first=False):
    """value (x - M) / S, then `op` with a per-channel vector -> (M', S'), or None where the
    result is not of that form (c - x, c / x)."""
    c = value.channels
    mean = np.zeros(c) if value.mean is None else value.mean
    std = np.ones(c) if value.std is None else value.std
    if op == "Add":
        return mean - vector * std, std
    if op == "Sub" and not const_first:
        return mean + vector * std, std
    if op == "Mul":
        return mean, std / vector
    if op == "Div" and not const_first:
        return mean, std * vector
    return None


def realize(imp, v, node):
    """Make v's pending map real -> the index a layer reads."""
    if v.layer == INPUT:
        return _preprocessing(imp, v, node)
    base = imp.layers[v.layer]
    cls = LAYERS[base.kind]
    single = imp.readers[v.tensor] == 1 and not base.sealed
    if single and cls.batch_statistics:      # a batchnorm: an affine map per channel at inference
        w = base.weights
        w["weight"] = (w["weight"] / v.std).astype(np.float32)
        w["bias"] = ((w["bias"] - v.mean) / v.std).astype(np.float32)
        imp.folded["per-channel affine into the batchnorm before it"] += 1
        return v.layer
    takes_bias = "bias" in inspect.signature(cls).parameters     # conv, dense
    if single and takes_bias and np.all(v.std == 1) and base.args.get("activation", "linear") == "linear":
        bias = base.weights.get("bias", np.zeros(v.channels, np.float32))
        base.weights["bias"] = (bias - v.mean).astype(np.float32)
        base.args["bias"] = True
        imp.folded[f"added constant into the {base.kind} bias"] += 1
        return v.layer
    weights = {"weight": (1 / v.std).astype(np.float32), "bias": (-v.mean / v.std).astype(np.float32),
               "running_mean": np.zeros(v.channels, np.float32),
               "running_var": np.full(v.channels, 1 - EPS, np.float32)}
    out = imp.emit(node, "batchnorm", {"eps": EPS}, [v.with_affine(None, None)], v.shape, weights,
                   v.spatial_vector, out=f"{v.tensor}.affine")
    return out.layer


def _preprocessing(imp, v, node):
    """(pixels - M) / S at the input -> the checkpoint's mean and std, composed with --mean/--std
    (what the graph's input itself expects: x = (pixel / 255 - mean) / std)."""
    m = np.zeros(v.channels) if v.mean is None else v.mean
    s = np.ones(v.channels) if v.std is None else v.std
    if np.any(s <= 0):
        raise Unsupported(node, "it scales the input by a negative number; cnncli's preprocessing "
                          "divides by a positive std")
    mean = imp.user_mean + m * imp.user_std
    std = imp.user_std * s
    if imp.preprocessing is not None and not (np.array_equal(imp.preprocessing[0], mean)
                                              and np.array_equal(imp.preprocessing[1], std)):
        raise Unsupported(node, "the input is read with two different normalisations")
    if imp.preprocessing is None and v.mean is not None:
        imp.folded["input normalisation into the preprocessing"] += 1
    imp.preprocessing = (mean, std)
    return INPUT
