"""`cnncli export`: a checkpoint -> one self-contained .onnx file (weights, normalisation, head,
and the class names and preprocessing in metadata_props), checked by onnx.checker and written
atomically."""

import json
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import CnnError
from ..files import write_atomic
from ..model.checkpoint import temperature
from .graph import Graph, build_graph

DEFAULT_OPSET = 17
MIN_OPSET = 13          # Softmax over one axis (the channels of a map) needs opset 13
MAX_PROTO_BYTES = 2 << 30   # protobuf's limit on one message: one .onnx file without external data


@dataclass
class ExportInfo:
    path: Path
    opset: int
    input_shape: tuple      # (C, H, W); the batch is dynamic
    output: str             # 'probabilities' or 'logits'
    width: int              # the output is (N, width)
    classes: list
    operators: list         # the ONNX op types used, sorted
    nodes: int
    bytes: int


def require_onnx():
    """-> the onnx module, or one line saying what to install."""
    try:
        import onnx
    except ImportError:
        raise CnnError("export needs the onnx package: pip install 'cnncli[onnx]' "
                       "(or pip install onnx)") from None
    return onnx


def check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise CnnError(f"opset {opset} is not one this export can write: use {MIN_OPSET} (Softmax over "
                       f"one axis needs it) to {newest} (the newest the installed onnx {onnx.__version__} "
                       f"knows); the default is {DEFAULT_OPSET}")


def metadata(loaded, output):
    """What a deployment needs besides the graph, as metadata_props (text keys and values)."""
    pre = loaded.meta["preprocessing"]
    h, w, c = loaded.shape
    return {"classes": json.dumps(loaded.classes), "input_height": str(h), "input_width": str(w),
            "input_channels": str(c), "resize": loaded.resize,
            "resize_rule": pre.get("resize_rule", ""), "color_rule": pre.get("color_rule", ""),
            "input": f"pixels: float32 N x {c} x {h} x {w} ({'RGB' if c == 3 else 'luma'}) scaled to "
                     "[0, 1] (pixel / 255); the checkpoint's mean and std are applied inside the graph",
            "mean": json.dumps(loaded.mean.tolist()), "std": json.dumps(loaded.std.tolist()),
            "output": output, "head": loaded.model.head, "temperature": repr(temperature(loaded.meta)),
            "cnncli_version": __version__,
            **multilabel_metadata(loaded)}


def multilabel_metadata(loaded):
    """A multi-label checkpoint's per-label thresholds (a label is present where its sigmoid
    output >= its threshold), as metadata_props; nothing for other heads."""
    if loaded.model.head != "multilabel":
        return {}
    from ..model.checkpoint import thresholds_of
    return {"thresholds": json.dumps(thresholds_of(loaded.meta, len(loaded.classes)))}


def to_onnx(loaded, opset, logits, name):
    """Loaded checkpoint -> (ModelProto, {layer index: tensor name})."""
    from onnx import TensorProto, helper, numpy_helper

    model = loaded.model
    h, w, c = model.input_shape
    g = Graph(helper, numpy_helper, opset)
    output, outs = build_graph(g, model, loaded.mean, loaded.std, logits, temperature(loaded.meta))
    k = model.output_shape[0] if logits else model.n_classes
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", k])], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnncli",
                              producer_version=__version__,
                              doc_string=f"cnncli {__version__}: {name}, {len(loaded.classes)} classes")
    proto.ir_version = helper.find_min_ir_version_for(proto.opset_import)  # loadable by older runtimes
    helper.set_model_props(proto, metadata(loaded, output))
    return proto, outs


def check_shapes(onnx, proto, model, outs):
    """ONNX's shape inference must give every layer the shape cnncli gives it (NCHW): a check of
    the exporter's padding and output-size arithmetic against cnncli's own."""
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for i, layer in enumerate(model.layers):
        s = layer.out_shape
        want = ["N", *((s[2], s[0], s[1]) if len(s) == 3 else s)]
        got = shapes.get(outs[i])
        if got is None or got[1:] != want[1:]:
            raise RuntimeError(f"exported layers[{i}] ({layer.kind}) has shape {got}, cnncli's is {want}")


def export(ckpt_path, out_path, opset=DEFAULT_OPSET, logits=False):
    """Checkpoint -> an .onnx file at out_path (written atomically) -> ExportInfo.
    Input 'pixels' float32 (N, C, H, W) in [0, 1]; output 'probabilities' (N, classes), or
    'logits' (N, K) with logits=True."""
    from ..commands.predict import load

    onnx = require_onnx()
    check_opset(onnx, opset)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise CnnError(f"{out_path} is a folder: give the file to write, e.g. {out_path / 'model.onnx'}")
    if out_path.exists() and out_path.resolve() == Path(ckpt_path).resolve():
        raise CnnError(f"{out_path} is the checkpoint itself: give the ONNX file another name, e.g. "
                       f"{out_path.with_suffix('.onnx')}")
    folder = out_path.parent
    if not folder.is_dir():
        raise CnnError(f"cannot write {out_path}: {folder} is not a folder" +
                       ("" if folder.exists() else " (it does not exist: create it first)"))
    loaded = load(ckpt_path)
    model = loaded.model
    weights = sum(layer.n_params() + layer.n_buffers() for layer in model.layers) * model.dtype.itemsize
    if weights > MAX_PROTO_BYTES - (16 << 20):
        raise CnnError(f"{ckpt_path}: {weights / 2**30:.1f} GiB of weights is more than one .onnx file holds "
                       "(protobuf's 2 GiB limit)")
    proto, outs = to_onnx(loaded, opset, logits, Path(ckpt_path).stem)
    onnx.checker.check_model(proto, full_check=True)
    check_shapes(onnx, proto, model, outs)
    data = proto.SerializeToString()
    write_atomic(out_path, lambda f: f.write(data), "ONNX model")
    h, w, c = loaded.shape
    out = proto.graph.output[0]
    return ExportInfo(out_path, opset, (c, h, w), out.name, out.type.tensor_type.shape.dim[1].dim_value, loaded.classes,
                      sorted({n.op_type for n in proto.graph.node}), len(proto.graph.node), len(data))
