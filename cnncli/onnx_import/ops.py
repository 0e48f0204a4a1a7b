"""One converter per ONNX operator (onnx2torch's table read the other way): each reads its
node's inputs (constants or Values), emits cnncli layers through the Importer and binds its
output. Element-wise activations never get here: convert.py recognises them first."""

from dataclasses import replace

import numpy as np

from ..layers import LAYERS, LayerError
from .affine import channel_vector, compose
from .constants import BATCH, attr
from .pads import node_pads, pad, reduce, spelling, text, with_ceil
from .values import Unsupported, Value

ALIASES = ("Identity", "Dropout")


def _float(value):
    """An ONNX float attribute (float32) -> its shortest decimal: 0.2, not 0.20000000298."""
    return float(str(np.float32(value)))


def _geometry(node, kind, args, value):
    """Build the layer as cnncli would, to check its shape -> its output shape."""
    try:
        return LAYERS[kind](**args).build(value.shape)
    except LayerError as e:
        raise Unsupported(node, str(e)) from None


def conv(imp, node):
    x = imp.value(node.input[0], node, keep_pad=True)
    w = imp.const(node.input[1], node, "weight").astype(np.float32, copy=False)
    b = imp.const(node.input[2], node, "bias").astype(np.float32, copy=False) if len(node.input) > 2 and node.input[2] else None
    if any(d != 1 for d in attr(node, "dilations", [1, 1])):
        raise Unsupported(node, "dilation other than 1")
    f, cg, kh, kw = w.shape
    groups = attr(node, "group", 1)
    stride = [int(s) for s in attr(node, "strides", [1, 1])]
    weights = {"weight": w} if b is None else {"weight": w, "bias": b}
    if len(x.shape) == 1:     # a 1x1 conv over a pooled (D, 1, 1) vector: a dense layer
        if not x.spatial_vector or (kh, kw) != (1, 1) or groups != 1 or any(attr(node, "pads", [0]) or [0]):
            raise Unsupported(node, "a convolution over a flat vector")
        weights["weight"] = w.reshape(f, cg)
        imp.emit(node, "dense", {"units": f, "bias": b is not None}, [x], (f,), weights, spatial_vector=True)
        return
    if x.channels != cg * groups:
        raise Unsupported(node, f"its weight reads {cg * groups} channels, its input has {x.channels}")
    pads = node_pads(node, x.shape[:2], (kh, kw), stride)
    if x.pad is not None:     # a Pad before: its zeros and the conv's own are one padding
        pads, x = tuple(a + b for a, b in zip(pads, x.pad)), x.unpadded
        imp.folded["Pad into the conv after it"] += 1
    args = {"filters": f, "size": [kh, kw], "stride": stride,
            "padding": spelling(pads, x.shape[:2], (kh, kw), stride), "groups": groups, "bias": b is not None}
    imp.emit(node, "conv", args, [x], _geometry(node, "conv", args, x), weights)


def batchnorm(imp, node):
    x = imp.value(node.input[0], node)
    if len([o for o in node.output if o]) > 1 or attr(node, "training_mode", 0):
        raise Unsupported(node, "batchnorm in training mode (running statistics as outputs)")
    names = ("weight", "bias", "running_mean", "running_var")
    weights = {k: imp.const(t, node, k).astype(np.float32, copy=False) for k, t in zip(names, node.input[1:5])}
    momentum = 1 - attr(node, "momentum", 0.9)
    args = {"eps": _float(attr(node, "epsilon", 1e-5))}
    if 0 < momentum < 1 and abs(momentum - 0.1) > 1e-6:
        args["momentum"] = _float(momentum)
    imp.emit(node, "batchnorm", args, [x], x.shape, weights, x.spatial_vector)


def pool(imp, node):
    x = imp.value(node.input[0], node)
    kind = "maxpool" if node.op_type == "MaxPool" else "avgpool"
    if len(x.shape) != 3:
        raise Unsupported(node, "pooling a flat vector")
    if any(d != 1 for d in attr(node, "dilations", [1, 1])) or attr(node, "storage_order", 0):
        raise Unsupported(node, "dilation or a column-major index output")
    if len([o for o in node.output if o]) > 1:
        raise Unsupported(node, "the argmax indices as an output")
    size = [int(k) for k in attr(node, "kernel_shape")]
    stride = [int(s) for s in attr(node, "strides", [1, 1])]
    if _whole_map(node, x.shape[:2], size):
        return imp.emit(node, "global" + kind, {}, [x], (x.channels,), spatial_vector=True)
    pads = node_pads(node, x.shape[:2], size, stride)
    if kind == "avgpool" and attr(node, "count_include_pad", 0) and any(pads):
        # the padding counted in the mean: real zeros (a pad layer), then a pool over them
        h, w, c = x.shape
        padded = (h + pads[0] + pads[1], w + pads[2] + pads[3], c)
        x = imp.emit(node, "pad", {"pads": list(pads)}, [x], padded, out=f"{node.output[0]}.zeros")
        pads = (0, 0, 0, 0)
    if attr(node, "ceil_mode", 0):
        pads = with_ceil(pads, x.shape[:2], size, stride)
    args = {"size": size, "stride": stride, "padding": spelling(pads, x.shape[:2], size, stride)}
    imp.emit(node, kind, args, [x], _geometry(node, kind, args, x))


def _whole_map(node, hw, size):
    """Is this one window over every real cell (such as Inception v1's 7x7 average over a 6x6 map
    padded at the bottom and right)? Then the global pool computes it, without the padding a plain
    pool would carry. Not for an average that counts the padding in."""
    if text(attr(node, "auto_pad", "NOTSET")) != "NOTSET" or attr(node, "count_include_pad", 0):
        return False
    top, left, bottom, right = [int(p) for p in attr(node, "pads", [0, 0, 0, 0])]
    return hw[0] + top + bottom == size[0] and hw[1] + left + right == size[1]


def global_pool(imp, node):
    x = imp.value(node.input[0], node)
    if len(x.shape) != 3:
        raise Unsupported(node, "global pooling of a flat vector")
    kind = "globalavgpool" if node.op_type == "GlobalAveragePool" else "globalmaxpool"
    imp.emit(node, kind, {}, [x], (x.channels,), spatial_vector=True)


def flatten(imp, node):
    x = imp.value(node.input[0], node)
    if attr(node, "axis", 1) not in (1, -len(x.onnx_shape)):
        raise Unsupported(node, "a flatten that keeps other axes than the batch")
    _to_vector(imp, node, x)


def _to_vector(imp, node, x):
    if len(x.shape) == 3:
        imp.emit(node, "flatten", {}, [x], (int(np.prod(x.shape)),))
    else:
        imp.alias(node, Value(x.layer, x.shape, False, x.mean, x.std, x.tensor, x.sealed), node.op_type)


def reshape(imp, node):
    x = imp.value(node.input[0], node)
    target = [int(d) for d in imp.const(node.input[1], node, "shape")]
    dims = [BATCH, *x.onnx_shape]
    target = [dims[i] if d == 0 and i < len(dims) else d for i, d in enumerate(target)]
    total = int(np.prod(x.onnx_shape))
    batch_first = target[0] in (BATCH, imp.src.batch or BATCH) or (target[0] == -1 and -1 not in target[1:])
    rest = [total if d == -1 else d for d in target[1:]]
    if batch_first and (x.shuffle or len(rest) == 4) and len(x.shape) == 3:
        return _shuffle_step(imp, node, x, rest)
    if batch_first and rest == [total]:
        return _to_vector(imp, node, x)
    if batch_first and len(x.shape) == 1 and rest == [total, 1, 1]:
        return imp.alias(node, Value(x.layer, x.shape, True, x.mean, x.std, x.tensor, x.sealed), "Reshape")
    raise Unsupported(node, f"a reshape of {'x'.join(map(str, x.onnx_shape))} to {target} moves values "
                      "across channels or positions (only a flatten is a cnncli layer)")


def _shuffle_step(imp, node, x, rest):
    """ShuffleNet's channel shuffle, Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) ->
    Reshape (N, C, H, W): the first Reshape marks the map split, the last emits a shuffle layer."""
    h, w, c = x.shape
    if x.shuffle is None and len(rest) == 4 and rest[2:] == [h, w] and rest[0] > 0 and rest[0] * rest[1] == c:
        return imp.alias(node, replace(x, shuffle=("split", rest[0])))
    if x.shuffle is not None and x.shuffle[0] == "across" and rest == [c, h, w]:
        imp.emit(node, "shuffle", {"groups": x.shuffle[1]}, [replace(x, shuffle=None)], x.shape)
        return None
    raise Unsupported(node, f"a reshape of {'x'.join(map(str, x.onnx_shape))} to {rest} per image moves "
                      "values across channels or positions (cnncli maps a flatten, and a channel shuffle "
                      "written as Reshape, Transpose (0, 2, 1, 3, 4), Reshape)")


def transpose(imp, node):
    x = imp.value(node.input[0], node)
    perm = [int(p) for p in attr(node, "perm", [])]
    if x.shuffle is None or x.shuffle[0] != "split" or perm != [0, 2, 1, 3, 4]:
        raise Unsupported(node, f"moving axes {perm}: cnncli maps a Transpose only inside a channel shuffle "
                          "(Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W))")
    imp.alias(node, replace(x, shuffle=("across", x.shuffle[1])))


def lrn(imp, node):
    x = imp.value(node.input[0], node)
    if len(x.shape) != 3:
        raise Unsupported(node, "local response normalisation of a flat vector")
    args = {"size": int(attr(node, "size")), "alpha": _float(attr(node, "alpha", 1e-4)),
            "beta": _float(attr(node, "beta", 0.75)), "bias": _float(attr(node, "bias", 1.0))}
    imp.emit(node, "lrn", args, [x], _geometry(node, "lrn", args, x))


def squeeze(imp, node):
    x = imp.value(node.input[0], node)
    axes = attr(node, "axes") if len(node.input) < 2 else imp.const(node.input[1], node, "axes")
    axes = sorted(int(a) % 4 for a in np.ravel(axes)) if axes is not None else [2, 3]
    spatial = node.op_type == "Unsqueeze"
    if len(x.shape) != 1 or axes != [2, 3] or x.spatial_vector == spatial:
        raise Unsupported(node, f"{node.op_type.lower()} of axes {axes} of a {'x'.join(map(str, x.onnx_shape))} tensor")
    imp.alias(node, Value(x.layer, x.shape, spatial, x.mean, x.std, x.tensor, x.sealed), node.op_type)


def gemm(imp, node):
    x = imp.value(node.input[0], node)
    if len(x.shape) != 1 or x.spatial_vector or attr(node, "transA", 0):
        raise Unsupported(node, "Gemm over anything but a batch of flat vectors")
    b = imp.const(node.input[1], node, "weight").astype(np.float32, copy=False)
    weight = b if attr(node, "transB", 0) else b.T
    alpha, beta = attr(node, "alpha", 1.0), attr(node, "beta", 1.0)
    weight = np.ascontiguousarray(weight if alpha == 1 else weight * np.float32(alpha))
    units = weight.shape[0]
    if weight.shape[1] != x.channels:
        raise Unsupported(node, f"its weight takes {weight.shape[1]} features, its input has {x.channels}")
    weights = {"weight": weight}
    if len(node.input) > 2 and node.input[2]:
        c = np.asarray(imp.const(node.input[2], node, "bias"), np.float32)
        if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1):
            raise Unsupported(node, f"a bias of shape {c.shape}, not one per unit")
        weights["bias"] = np.broadcast_to(c.reshape(-1) * np.float32(beta), (units,)).astype(np.float32)
    imp.emit(node, "dense", {"units": units, "bias": "bias" in weights}, [x], (units,), weights)


def matmul(imp, node):
    x = imp.value(node.input[0], node)
    b = imp.const(node.input[1], node, "weight")
    if len(x.shape) != 1 or x.spatial_vector or b.ndim != 2 or b.shape[0] != x.channels:
        raise Unsupported(node, "MatMul other than a batch of flat vectors by a constant matrix")
    weights = {"weight": np.ascontiguousarray(b.T.astype(np.float32, copy=False))}
    imp.emit(node, "dense", {"units": b.shape[1], "bias": False}, [x], (b.shape[1],), weights)


def add(imp, node):
    xs = [imp.get(t, node) for t in node.input if t]
    if all(isinstance(v, Value) for v in xs):
        if len(xs) == 1:
            return imp.alias(node, xs[0], "Sum of one input")
        if any(v.shape != xs[0].shape for v in xs):
            raise Unsupported(node, "adding tensors of different shapes (broadcasting)")
        return imp.emit(node, "add", {}, xs, xs[0].shape, spatial_vector=xs[0].spatial_vector)
    return affine(imp, node)


def affine(imp, node):
    a, b = (imp.get(t, node) for t in node.input[:2])
    if isinstance(a, Value) and isinstance(b, Value):
        return gate(imp, node, a, b)
    const_first = not isinstance(a, Value)
    v, c = (b, a) if const_first else (a, b)
    vector = channel_vector(c, v)
    if vector is None:
        raise Unsupported(node, f"its constant of shape {list(np.shape(c))} is not one number per channel")
    if node.op_type in ("Mul", "Div") and np.any(vector == 0):
        raise Unsupported(node, "a multiplication by zero")
    result = compose(v, node.op_type, vector, const_first)
    if result is None:
        raise Unsupported(node, "a constant minus or over a feature map")
    imp.alias(node, v.with_affine(*result))


def gate(imp, node, a, b):
    """Mul(map, gate), either order: a squeeze-and-excitation gate, one value per channel of the
    map ((N, C, 1, 1) over a map (N, C, H, W); (N, C) over (N, C)) -> a scale layer."""
    x, s = (b, a) if len(a.shape) < len(b.shape) else (a, b)
    fits = s.shape == (x.channels,) and s.spatial_vector == (len(x.shape) == 3 or x.spatial_vector)
    if node.op_type != "Mul" or not fits:
        raise Unsupported(node, f"{node.op_type} of a {'x'.join(map(str, a.onnx_shape))} and a "
                          f"{'x'.join(map(str, b.onnx_shape))} tensor: cnncli multiplies a map only by "
                          "one value per channel (N, C, 1, 1)")
    imp.emit(node, "scale", {}, [x, s], x.shape, spatial_vector=x.spatial_vector)


def concat(imp, node):
    xs = [imp.value(t, node) for t in node.input if t]
    if len(xs) == 1:         # DenseNet's torch.cat([x], 1) of its first layer
        return imp.alias(node, xs[0], "Concat of one input")
    axis = attr(node, "axis")
    rank = len(xs[0].onnx_shape) + 1
    if axis % rank != 1:
        raise Unsupported(node, f"joining along axis {axis}; cnncli joins channels (axis 1)")
    if len({len(v.shape) for v in xs}) != 1:
        raise Unsupported(node, "joining feature maps with flat vectors")
    shape = xs[0].shape[:-1] + (sum(v.channels for v in xs),)
    imp.emit(node, "concat", {}, xs, shape, spatial_vector=all(v.spatial_vector for v in xs))


def _channel_slice(imp, node, x, start, stop, out):
    if stop <= start:
        raise Unsupported(node, f"an empty slice of channels {start}..{stop}")
    if (start, stop) == (0, x.channels):
        imp.values[out] = x
        imp.folded[f"{node.op_type} of every channel"] += 1
        return
    shape = x.shape[:-1] + (stop - start,)
    imp.emit(node, "slice", {"start": start, "stop": stop}, [x], shape, spatial_vector=x.spatial_vector, out=out)


def slice_(imp, node):
    """Slice along the channels only (ShuffleNetV2's channel split) -> a slice layer."""
    x = imp.value(node.input[0], node)
    if len(node.input) > 1:
        starts, ends = (np.ravel(imp.const(t, node, w)) for t, w in zip(node.input[1:3], ("starts", "ends")))
        axes = np.ravel(imp.const(node.input[3], node, "axes")) if len(node.input) > 3 and node.input[3] else None
        steps = np.ravel(imp.const(node.input[4], node, "steps")) if len(node.input) > 4 and node.input[4] else None
    else:
        starts, ends, axes, steps = attr(node, "starts"), attr(node, "ends"), attr(node, "axes"), None
    dims = [BATCH, *x.onnx_shape]
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    cut = {}
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis, dim = int(axis) % len(dims), dims[int(axis) % len(dims)]
        start, end = (max(0, min(dim, int(v) + dim if v < 0 else int(v))) for v in (start, end))
        if (start, end, step) != (0, dim, 1):
            cut[axis] = (start, end, int(step))
    if set(cut) - {1} or any(step != 1 for _, _, step in cut.values()):
        raise Unsupported(node, f"slicing axes {sorted(cut)} (steps {[c[2] for c in cut.values()]}): cnncli slices "
                          "the channels (axis 1), step 1")
    start, stop, _ = cut.get(1, (0, x.channels, 1))
    _channel_slice(imp, node, x, start, stop, node.output[0])


def split(imp, node):
    """Split on the channels (`x.chunk(2, dim=1)`) -> one slice layer per output."""
    x = imp.value(node.input[0], node)
    rank = len(x.onnx_shape) + 1
    if attr(node, "axis", 0) % rank != 1:
        raise Unsupported(node, f"splitting axis {attr(node, 'axis', 0)}; cnncli splits the channels (axis 1)")
    outs = list(node.output)
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in np.ravel(imp.const(node.input[1], node, "split"))]
    elif attr(node, "split") is not None:
        sizes = [int(v) for v in attr(node, "split")]
    else:    # equal parts, the last one smaller where they do not divide (opset 18's num_outputs)
        part = -(-x.channels // len(outs))
        sizes = [min(part, x.channels - k * part) for k in range(len(outs))]
    if sum(sizes) != x.channels or len(sizes) != len(outs) or min(sizes) < 1:
        raise Unsupported(node, f"split sizes {sizes} of {x.channels} channels into {len(outs)} outputs")
    start = 0
    for size, out in zip(sizes, outs):
        if out:
            _channel_slice(imp, node, x, start, start + size, out)
        start += size


def softmax(imp, node):
    x = imp.value(node.input[0], node)
    axis = attr(node, "axis", 1 if imp.src.opset < 13 else -1)
    rank = len(x.onnx_shape) + 1
    over_channels = axis % rank == 1 and (imp.src.opset >= 13 or len(x.shape) == 1)
    if not (over_channels or (len(x.shape) == 1 and not x.spatial_vector and axis % rank == 1)):
        raise Unsupported(node, f"a softmax over axis {axis}; cnncli's is over the channels")
    imp.emit(node, "activation", {"fn": "softmax"}, [x], x.shape, spatial_vector=x.spatial_vector)


def alias(imp, node):
    imp.alias(node, imp.value(node.input[0], node), node.op_type)


CONVERTERS = {
    "Conv": conv, "BatchNormalization": batchnorm, "MaxPool": pool, "AveragePool": pool,
    "GlobalAveragePool": global_pool, "GlobalMaxPool": global_pool, "Flatten": flatten, "Reshape": reshape,
    "Squeeze": squeeze, "Unsqueeze": squeeze, "Gemm": gemm, "MatMul": matmul, "Add": add, "Sum": add,
    "Sub": affine, "Mul": affine, "Div": affine, "Concat": concat, "Softmax": softmax,
    "Transpose": transpose, "LRN": lrn, "Pad": pad, "ReduceMean": reduce, "ReduceMax": reduce,
    "Slice": slice_, "Split": split,
    **{op: alias for op in ALIASES},
}
