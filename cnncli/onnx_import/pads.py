"""ONNX padding -> cnncli's: a conv's or pool's `pads` / `auto_pad` / `ceil_mode` as the layer's
padding, and the Pad operator as zeros pending on a map (a Conv takes them into its own padding;
any other reader gets a pad layer, since a max pool pads with -inf and an average counts real
cells only)."""

import numpy as np

from ..layers.base import resolve_padding
from .constants import attr
from .values import Unsupported, Value


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def node_pads(node, hw, size, stride):
    """The node's own pads (top, bottom, left, right) for an hw map, from `pads` or `auto_pad`."""
    auto = text(attr(node, "auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        same, _ = resolve_padding("same", hw, size, stride)   # the odd extra row at the end (UPPER)
        return same if auto == "SAME_UPPER" else (same[1], same[0], same[3], same[2])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        raise Unsupported(node, f"auto_pad {auto}")
    top, left, bottom, right = [int(p) for p in attr(node, "pads", [0, 0, 0, 0])]
    if min(top, left, bottom, right) < 0:
        raise Unsupported(node, "negative pads (a crop)")
    return (top, bottom, left, right)


def ceil_extra(h, k, s, lo, hi):
    """ceil_mode's extra padding at the end: out = ceil((h + lo + hi - k) / s) + 1, less one when
    the last window would start in the padding at the end (PyTorch's and ONNX Runtime's rule)."""
    span = h + lo + hi - k
    out = -(-span // s) + 1
    if (out - 1) * s >= h + lo:
        out -= 1
    return max(0, (out - 1) * s + k - (h + lo + hi))


def with_ceil(pads, hw, size, stride):
    """pads with as many more rows / columns at the end as ceil_mode's last window needs."""
    top, bottom, left, right = pads
    return (top, bottom + ceil_extra(hw[0], size[0], stride[0], top, bottom),
            left, right + ceil_extra(hw[1], size[1], stride[1], left, right))


def spelling(pads, hw, size, stride):
    """(top, bottom, left, right) -> cnncli's padding: 'valid', [ph, pw], 'same' where TensorFlow's
    rule pads so, else the four numbers."""
    top, bottom, left, right = pads
    if top == bottom and left == right:
        return "valid" if top == left == 0 else [top, left]
    if tuple(pads) == resolve_padding("same", hw, size, stride)[0]:
        return "same"
    return [top, bottom, left, right]


def pad(imp, node):
    """Pad, mode constant, value 0, on H and W only -> zeros pending on the map."""
    x = imp.value(node.input[0], node, keep_pad=True)
    mode = text(attr(node, "mode", "constant"))
    if mode != "constant":
        raise Unsupported(node, f"{mode} padding (cnncli pads with zeros)")
    if imp.src.opset < 11:
        pads, value = attr(node, "pads", attr(node, "paddings")), attr(node, "value", 0.0)
    else:
        pads = imp.const(node.input[1], node, "pads")
        value = imp.const(node.input[2], node, "constant value") if len(node.input) > 2 and node.input[2] else 0.0
    pads = [int(p) for p in np.ravel(pads)]
    rank = len(x.onnx_shape) + 1
    if len(node.input) > 3 and node.input[3]:         # opset 18's axes: pads for these axes only
        axes = [int(a) % rank for a in np.ravel(imp.const(node.input[3], node, "axes"))]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[rank + a] = pads[k], pads[len(axes) + k]
        pads = full
    if float(np.ravel(value)[0]) != 0.0:
        raise Unsupported(node, f"padding with {float(np.ravel(value)[0]):g} (cnncli pads with zeros)")
    if rank != 4 or len(x.shape) != 3 or len(pads) != 8:
        raise Unsupported(node, f"padding a {'x'.join(map(str, x.onnx_shape))} tensor (cnncli pads feature maps)")
    if any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise Unsupported(node, f"pads {pads}: cnncli adds zeros on height and width only, none negative")
    new = (pads[2], pads[6], pads[3], pads[7])
    base = x.unpadded if x.pad is not None else x
    if x.pad is not None:      # Pad after Pad: the zeros add up
        new = tuple(a + b for a, b in zip(new, x.pad))
    if not any(new):
        return imp.alias(node, base, "Pad of nothing")
    h, w, c = base.shape
    if imp.sealed(node.output[0]):      # a pad layer of a cnncli export comes back as one
        return imp.emit(node, "pad", {"pads": list(new)}, [base], (h + new[0] + new[1], w + new[2] + new[3], c))
    padded = Value(base.layer, (h + new[0] + new[1], w + new[2] + new[3], c), tensor=node.output[0],
                   pad=new, unpadded=base, pad_node=node)
    imp.alias(node, padded)


def reduce(imp, node):
    """ReduceMean / ReduceMax over H and W -> a global pool (keepdims: the (C, 1, 1) ONNX holds)."""
    x = imp.value(node.input[0], node)
    # axes: an attribute up to opset 17, the second input from 18
    axes = imp.const(node.input[1], node, "axes") if len(node.input) > 1 and node.input[1] else attr(node, "axes")
    rank = len(x.onnx_shape) + 1
    axes = None if axes is None or np.size(axes) == 0 else sorted(int(a) % rank for a in np.ravel(axes))
    if axes is None and attr(node, "noop_with_empty_axes", 0):
        return imp.alias(node, x, f"{node.op_type} over no axes")
    if len(x.shape) != 3 or axes != [2, 3]:
        raise Unsupported(node, f"a {node.op_type[6:].lower()} over axes {axes if axes is not None else 'all'} of a "
                          f"{'x'.join(map(str, x.onnx_shape))} tensor (cnncli's global pools reduce height and width)")
    kind = "globalavgpool" if node.op_type == "ReduceMean" else "globalmaxpool"
    imp.emit(node, kind, {}, [x], (x.channels,), spatial_vector=bool(attr(node, "keepdims", 1)))
