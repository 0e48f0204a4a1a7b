"""A PyTorch state_dict -> a cnncli checkpoint for the shipped architecture.

The state_dict's modules ('_blocks.3._bn1': its weight, bias, running_mean, running_var) come in
the order the reference network registers them, which is the order its forward runs them; the
architecture's layers that hold parameters (conv, batchnorm, dense) come in the same order. The
two lists are paired one to one, and every array is checked by name and shape: a file that does
not fit says which key and which shape. Both sides use the PyTorch layout (conv (F, C/g, kh, kw),
dense (out, in)), so the arrays are taken as they are.
"""

import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..data.decode import COLOR_RULE, RESIZE_RULE
from ..errors import CnnError
from .catalog import entry as find_entry
from .torchfile import WeightsError, read_state_dict

IGNORED = ("num_batches_tracked",)   # PyTorch's batchnorm step counter: no role at inference


def modules(state):
    """{'_blocks.3._bn1': {'weight': array, ...}} in the file's order."""
    out = OrderedDict()
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        out.setdefault(prefix, {})[leaf] = value
    return out


def match(model, state, where):
    """-> {'layers.<i>.<name>': float32 array}: the state_dict's modules paired with the model's
    layers that hold parameters, in order; any missing, extra or misshapen array is one line."""
    layers = [(i, layer) for i, layer in enumerate(model.layers) if layer.param_shapes()]
    mods = list(modules(state).items())
    if len(mods) != len(layers):
        raise WeightsError(f"{where}: {len(mods)} modules with weights in the file, {len(layers)} layers with "
                           "weights in the architecture: not this network's weights")
    arrays = {}
    for (i, layer), (prefix, leaves) in zip(layers, mods):
        needed = {**layer.param_shapes(), **layer.buffer_shapes()}
        for name, shape in needed.items():
            if name not in leaves:
                raise WeightsError(f"{where}: '{prefix}.{name}' is missing: layers.{i} ({layer.kind}) needs "
                                   f"a {name} of shape {tuple(shape)}")
            a = leaves[name]
            if a.shape != tuple(shape) or a.dtype.kind != "f":
                raise WeightsError(f"{where}: '{prefix}.{name}' has shape {a.shape} ({a.dtype}); layers.{i} "
                                   f"({layer.kind}) needs {tuple(shape)} (float)")
            if not np.all(np.isfinite(a)):
                raise WeightsError(f"{where}: '{prefix}.{name}' holds NaN or infinite values")
            arrays[f"layers.{i}.{name}"] = a.astype(np.float32)
        extra = sorted(set(leaves) - set(needed) - set(IGNORED))
        if extra:
            raise WeightsError(f"{where}: '{prefix}.{extra[0]}' has no place in layers.{i} ({layer.kind})")
    return arrays


def preprocessing(e, input_shape):
    h, w, c = input_shape
    return {"input": [h, w, c], "channels": c, "mean": list(e.mean), "std": list(e.std), "resize": e.resize,
            "resize_rule": RESIZE_RULE[e.resize], "color_rule": COLOR_RULE,
            "scale": "x = (pixel / 255 - mean) / std", "note": e.preprocessing_note}


def convert(name, weights=None):
    """-> (arrays, meta) of a cnncli checkpoint: the network's shipped architecture with the
    weights of its installed package (or of the file `weights`)."""
    from ..config import load_architecture

    e = find_entry(name)
    path = Path(weights) if weights is not None else e.weights_path()
    arch = load_architecture(e.architecture_path())
    model = arch.build(init=False)
    arrays = match(model, read_state_dict(path), str(path))
    classes = e.class_names()
    if len(classes) != model.n_classes:
        raise CnnError(f"{name}: {len(classes)} class names for a {model.n_classes}-class network")
    meta = {"kind": "pretrained", "architecture": arch.to_dict(), "classes": classes,
            "preprocessing": preprocessing(e, arch.input), "epoch": 0, "metrics": {},
            "pretrained": {"name": e.name, "weights": f"{e.distribution}: {e.weights}", "licence": e.licence,
                           "imagenet_top1": e.top1, "top1_source": e.top1_source}}
    return arrays, meta


def get(name, out_dir, weights=None, force=False):
    """Write out_dir/model.npz (the checkpoint) and out_dir/model.yaml (the architecture) -> their
    paths; existing ones are replaced only with force."""
    from ..files import check_model_folder
    from ..model import checkpoint

    out = Path(out_dir)
    check_model_folder(out, force)
    arrays, meta = convert(name, weights)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CnnError(f"cannot create {out} ({e.strerror or e})") from None
    ckpt, yaml_path = out / "model.npz", out / "model.yaml"
    checkpoint.save(ckpt, arrays, meta)
    src = find_entry(name).architecture_path()
    try:
        shutil.copyfile(src, yaml_path)
    except OSError as e:
        raise CnnError(f"cannot write {yaml_path} ({e.strerror or e})") from None
    return ckpt, yaml_path
