"""Reading an ONNX file: the model, its one image input and its size, the nodes the output needs,
and the classifier head at the end (a Softmax; cnncli's own sigmoid head [1 - p, p])."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CnnError
from .constants import attr


@dataclass
class Source:
    proto: object           # onnx.ModelProto
    nodes: list             # the nodes the output depends on, in topological order
    input: str              # the image input's name
    shape: tuple            # (h, w, c)
    batch: object           # the input's batch dimension: an int, or None where dynamic
    logits: str             # the tensor holding the scores before the head
    head: str               # 'softmax' (found, or added) or 'sigmoid'
    head_found: bool        # the graph computed the head itself (its output is probabilities)
    output: str             # the graph's output
    opset: int
    initializers: dict      # name -> array
    metadata: dict          # metadata_props
    head_ops: list = None   # the operators of the head's nodes (taken out of `nodes`)


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise CnnError("import needs the onnx package: pip install 'cnncli[onnx]' (or pip install onnx)") from None
    return onnx


def read(path, input_hwc=None):
    """An .onnx file -> Source. Bad files, several inputs or outputs, a dynamic size without
    --input: one CnnError line."""
    onnx = require_onnx()
    path = Path(path)
    if not path.is_file():
        raise CnnError(f"{path}: no such file" if not path.exists() else f"{path} is a folder, not an .onnx file")
    try:
        proto = onnx.load(str(path))
    except Exception as e:
        raise CnnError(f"{path}: not an ONNX model ({e.__class__.__name__}: {str(e).splitlines()[0][:100]})") from None
    graph = proto.graph
    if not graph.node:
        raise CnnError(f"{path}: not an ONNX model with a graph (no nodes)")
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 7:
        raise CnnError(f"{path}: opset {opset} is older than cnncli reads (7 or newer)")
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise CnnError(f"{path}: {len(inputs)} inputs ({', '.join(v.name for v in inputs)}); an image "
                       "classifier has one")
    if len(graph.output) != 1:
        raise CnnError(f"{path}: {len(graph.output)} outputs; cnncli imports a classifier with one")
    shape, batch = _input_shape(path, inputs[0], input_hwc)
    output = graph.output[0].name
    nodes = _needed(graph.node, output)
    logits, head, found, kept = _head(nodes, output, inits)
    meta = {p.key: p.value for p in proto.metadata_props}
    head_ops = [n.op_type for n in nodes if not any(n is k for k in kept)]
    return Source(proto, kept, inputs[0].name, shape, batch, logits, head, found, output, opset, inits, meta,
                  head_ops)


def _input_shape(path, value, input_hwc):
    """(N, C, H, W) with fixed C, H, W, or --input H W C -> ((h, w, c), batch or None)."""
    t = value.type.tensor_type
    if t.elem_type != 1:
        raise CnnError(f"{path}: input '{value.name}' is not float32; cnncli imports float32 image classifiers")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    if len(dims) != 4:
        raise CnnError(f"{path}: input '{value.name}' has {len(dims)} dimensions; an image input is "
                       "N x C x H x W")
    n, c, h, w = dims
    if input_hwc is not None:
        gh, gw, gc = input_hwc
        for name, fixed, given in (("height", h, gh), ("width", w, gw), ("channels", c, gc)):
            if fixed is not None and fixed != given:
                raise CnnError(f"--input gives {name} {given}, but the graph fixes it at {fixed}")
        return (gh, gw, gc), n
    if None in (c, h, w):
        raise CnnError(f"{path}: input '{value.name}' has a dynamic size "
                       f"({' x '.join('?' if d is None else str(d) for d in dims[1:])}, C x H x W): "
                       "give it with --input H W C")
    return (h, w, c), n


def _needed(nodes, output):
    """The nodes the output depends on, in the file's (topological) order."""
    want, keep = {output}, []
    for node in reversed(list(nodes)):
        if any(o in want for o in node.output):
            keep.append(node)
            want.update(t for t in node.input if t)
    return keep[::-1]


def _head(nodes, output, inits):
    """-> (logits tensor, head, whether the graph computes it, the nodes without it).
    Softmax over the classes at the end is the head; so is cnncli's sigmoid head
    Concat(1 - Sigmoid(z), Sigmoid(z)). Anything else is taken as logits, and a softmax added."""
    by_output = {n.output[0]: n for n in nodes}
    last = by_output.get(output)
    if last is not None and last.op_type == "Softmax" and attr(last, "axis", 1) in (1, -1):
        return last.input[0], "softmax", True, [n for n in nodes if n is not last]
    if last is not None and last.op_type == "Concat" and len(last.input) == 2:
        q, p = (by_output.get(t) for t in last.input)
        if (p is not None and q is not None and p.op_type == "Sigmoid" and q.op_type == "Sub"
                and q.input[1] == p.output[0] and q.input[0] in inits
                and np.allclose(inits[q.input[0]], 1.0)):
            drop = {id(last), id(p), id(q)}
            return p.input[0], "sigmoid", True, [n for n in nodes if id(n) not in drop]
    return output, "softmax", False, nodes
