"""Constant folding: the ONNX operators that compute weights and shapes from constants alone
(the model zoo's ConstantOfShape weights, PyTorch's Shape -> Gather -> Unsqueeze -> Concat chains
that compute a flatten's target shape). Each is numpy over the operator's specification.

BATCH stands for the batch size in a folded shape: Shape of a feature map gives
[BATCH, C, H, W], and a Reshape whose first target entry is BATCH keeps the batch axis.
"""

import numpy as np

BATCH = 1_000_003   # a prime no real dimension is: the batch size, unknown until run time


def attr(node, name, default=None):
    """A node's attribute by name, as a Python value (tensors as arrays)."""
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return numpy_helper.to_array(value) if hasattr(value, "dims") else value
    return default


def _axes(node, inputs, opset):
    """Unsqueeze / Squeeze axes: an attribute before opset 13, the second input since."""
    if len(inputs) > 1 and inputs[1] is not None:
        return [int(a) for a in np.ravel(inputs[1])]
    axes = attr(node, "axes")
    return None if axes is None else [int(a) for a in axes]


def _unsqueeze(node, inputs, opset):
    x, axes = inputs[0], _axes(node, inputs, opset)
    rank = x.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        x = np.expand_dims(x, a)
    return x


def _squeeze(node, inputs, opset):
    axes = _axes(node, inputs, opset)
    x = inputs[0]
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


def _constant_of_shape(node, inputs, opset):
    value = attr(node, "value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full([int(d) for d in inputs[0]], value.ravel()[0], value.dtype)


def _constant(node, inputs, opset):
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        v = attr(node, key)
        if v is not None:
            dtype = np.float32 if "float" in key else np.int64 if "int" in key else None
            return np.asarray(v, dtype) if dtype else np.asarray(v)
    raise ValueError("a Constant without a value cnncli reads")


def _reshape(node, inputs, opset):
    x, shape = inputs[0], [int(d) for d in inputs[1]]
    shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _cast(node, inputs, opset):
    from onnx import helper

    return inputs[0].astype(helper.tensor_dtype_to_np_dtype(attr(node, "to")))


def _slice(node, inputs, opset):
    x = inputs[0]
    if len(inputs) > 1:
        starts, ends = np.ravel(inputs[1]), np.ravel(inputs[2])
        axes = np.ravel(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else range(len(starts))
        steps = np.ravel(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    else:
        starts, ends = attr(node, "starts"), attr(node, "ends")
        axes, steps = attr(node, "axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        index[int(a)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
    return x[tuple(index)]


def _binary(fn):
    return lambda node, inputs, opset: fn(inputs[0], inputs[1]).astype(np.result_type(inputs[0], inputs[1]))


FOLD = {
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Identity": lambda node, inputs, opset: inputs[0],
    "Cast": _cast,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Flatten": lambda node, inputs, opset: inputs[0].reshape(
        int(np.prod(inputs[0].shape[:attr(node, "axis", 1)])), -1),
    "Gather": lambda node, inputs, opset: np.take(inputs[0], inputs[1].astype(np.int64), axis=attr(node, "axis", 0)),
    "Concat": lambda node, inputs, opset: np.concatenate([np.atleast_1d(i) for i in inputs], axis=attr(node, "axis")),
    "Transpose": lambda node, inputs, opset: np.transpose(inputs[0], attr(node, "perm")),
    "Slice": _slice,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(lambda a, b: a // b if a.dtype.kind in "iu" and b.dtype.kind in "iu" else a / b),
    "Sqrt": lambda node, inputs, opset: np.sqrt(inputs[0]),
    "Neg": lambda node, inputs, opset: -inputs[0],
}


def fold(node, inputs, opset):
    """The node's first output from constant inputs (None for an absent optional input), or
    None when the operator is not one folding knows."""
    fn = FOLD.get(node.op_type)
    if fn is None:
        return None
    if node.op_type == "ConstantOfShape" and int(np.prod(inputs[0])) > 1 << 28:
        raise ValueError("a ConstantOfShape of over 2^28 values")
    return np.asarray(fn(node, inputs, opset))
