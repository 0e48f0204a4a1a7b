"""Fine-tuning from a checkpoint: `train.init` / `--init` with a head for other classes, and
`train.freeze`. Each says in one line what it did; a checkpoint that does not fit says which layer
and which shapes."""

import numpy as np

from ..errors import CnnError
from ..model import checkpoint


def head_index(model):
    """The classifier: the last layer with weights (a dense layer, or a 1x1 conv before global pooling)."""
    return max(i for i, layer in enumerate(model.layers) if layer.param_shapes())


def warm_start(model, path, report=None):
    """Load the checkpoint at `path` into `model`: every layer's arrays, by index, shapes checked.
    The head alone may differ, in its number of outputs (classes): it keeps the fresh weights the
    config's seed gave it, and a line says so. -> the checkpoint's meta."""
    arrays, meta = checkpoint.load(path)
    where = f"train.init {path}"
    head = head_index(model)
    mine = model.state_dict()
    reinit = False
    for key, want in mine.items():
        i = int(key.split(".")[1])
        if key not in arrays:
            raise CnnError(f"{where}: array '{key}' is missing: warm start needs the same architecture "
                           "(only the head's class count may differ)")
        have = arrays[key]
        if have.shape != want.shape and i == head and have.shape[1:] == want.shape[1:]:
            reinit = True
            continue
        if have.shape != want.shape or have.dtype.kind != "f":
            layer = model.layers[i]
            raise CnnError(f"{where}: layers[{i}] ({layer.kind}) {key.split('.', 2)[2]} has shape "
                           f"{_shape(have.shape)} in the checkpoint, {_shape(want.shape)} here: only the head "
                           f"(layers[{head}]) may differ, in its number of classes")
        if not np.all(np.isfinite(have)):
            raise CnnError(f"{where}: array '{key}' holds NaN or infinite values")
    model.load_state_dict({k: (mine[k] if reinit and int(k.split(".")[1]) == head else arrays[k]) for k in mine})
    if reinit and report is not None:
        theirs = len(meta.get("classes") or ()) or arrays[f"layers.{head}.weight"].shape[0]
        report.message(f"head layers[{head}] reinitialised: {theirs:,} classes in the checkpoint, "
                       f"{model.n_classes:,} here")
    return meta


def _shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + ")"


def apply_freeze(cfg, model):
    """train.freeze and train.freeze_batchnorm -> the model's frozen layers; -> a line saying what
    is held fixed, or None."""
    from ..model.freeze import apply

    t = cfg.train
    frozen = apply(model, t.freeze, f"{cfg.source}: train.freeze", t.freeze_batchnorm)
    norms = len(model.still - frozen)
    stats = (f"; batchnorm statistics fixed in the other {norms} batchnorm layer(s) (train.freeze_batchnorm: "
             "they run on their running statistics, their weight and bias train)") if norms else ""
    if not frozen:
        return f"frozen: nothing{stats}" if stats else None
    total, trainable = model.n_params(), model.n_trainable()
    span = (f"layers[0..{max(frozen)}]" if frozen == frozenset(range(max(frozen) + 1))
            else "layers " + ", ".join(map(str, sorted(frozen))))
    return (f"frozen: {span}, weights and batchnorm statistics fixed (batchnorm on its running statistics); "
            f"{trainable:,} of {total:,} parameters train{stats}")
