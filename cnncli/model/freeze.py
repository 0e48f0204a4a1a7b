"""train.freeze: which layers keep their weights and batchnorm statistics fixed, and which layers
a training step may skip in backward.

A frozen layer runs in inference mode during training (batchnorm on its running statistics,
dropout off: PyTorch's `.eval()` on a frozen backbone), and the optimizer never steps its
parameters. Backward walks only the layers that lead to a trainable parameter: a frozen prefix
gets no gradient work at all, which is what makes training a head on frozen features fast.
"""

import difflib

from ..errors import CnnError


def freeze_indices(model, spec, where="train.freeze"):
    """train.freeze -> the frozen layer indices. A name or an index: every layer up to and
    including it; a list: exactly those layers. Unknown names, indices out of range, and freezing
    every trainable layer are one CnnError line each."""
    if spec is None:
        return frozenset()
    names = {args["name"]: i for i, (_, args) in enumerate(model.specs) if args.get("name") is not None}
    if isinstance(spec, list):
        return _checked(model, frozenset(_index(model, names, item, where) for item in spec), where)
    return _checked(model, frozenset(range(_index(model, names, spec, where) + 1)), where)


def apply(model, spec, where="train.freeze", batchnorm_statistics=False):
    """Freeze `model` as train.freeze `spec` says (freeze_indices, then Model.freeze; with
    batchnorm_statistics, train.freeze_batchnorm, every batchnorm on its running statistics too)
    -> the frozen indices. train, lr-find and init's timed steps all freeze through here; the
    optimizer then takes Model.trainable_params()."""
    frozen = freeze_indices(model, spec, where)
    model.freeze(frozen, batchnorm_statistics)
    return frozen


def _index(model, names, item, where):
    n = len(model.layers)
    if isinstance(item, bool) or not isinstance(item, (int, str)):
        raise CnnError(f"{where}: give a layer's name or index (0 to {n - 1}), or a list of them; got {item!r}")
    if isinstance(item, int):
        if not 0 <= item < n:
            raise CnnError(f"{where}: layers[{item}] does not exist: the model has layers 0 to {n - 1}")
        return item
    if item not in names:
        close = difflib.get_close_matches(item, list(names), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        known = ", ".join(names) or "none: give layers a name, or freeze by index"
        raise CnnError(f"{where}: no layer is named {item!r}{hint}; named layers: {known}")
    return names[item]


def _checked(model, frozen, where):
    if all(i in frozen for i, layer in enumerate(model.layers) if layer.param_shapes()):
        raise CnnError(f"{where}: this freezes every layer with weights, leaving nothing to train: freeze up to "
                       "a layer before the head (the last layer with weights)")
    return frozen


def dead_layers(model, frozen):
    """-> the indices whose backward a step skips: frozen or without parameters, and reading only
    the input or such layers (no trainable parameter at or below them). Nothing is skipped when
    nothing is frozen."""
    if not frozen:
        return frozenset()
    dead = set()
    for i, layer in enumerate(model.layers):
        fixed = i in frozen or not layer.param_shapes()
        if fixed and all(j < 0 or j in dead for j in model.sources[i]):
            dead.add(i)
    return frozenset(dead)
