"""The numbers behind `cnncli inspect`: per-layer shapes, parameters, cost; walked from shapes
alone, so no kernel is compiled and numba is never imported."""

import math

BYTES = 4  # float32


def layer_table(arch, batch_size=None, optimizer="adam", momentum=0.9, freeze=None):
    """Architecture -> {"layers": [{index, type, from, config, activation, output_shape, params,
    buffers, macs, activation_size, receptive_field, frozen}], total_params, trainable_params,
    non_trainable_params, total_macs, model_mb, classes, output, and with batch_size: train_memory_mb};
    the layers train.freeze names (model/freeze.py) are marked frozen and train no parameters.

    The receptive field follows the widest path into each layer: rf = the largest of its inputs'
    fields, grown by (kernel - 1) x the input-pixel distance between neighbouring inputs (jump)."""
    from .freeze import freeze_indices
    from .graph import INPUT

    model = arch.build(build_params=False)
    frozen = freeze_indices(model, freeze)
    rows = []
    fields = {INPUT: ((1, 1), (1, 1))}  # index -> (receptive field, jump); None once flat
    act_bytes = kept_bytes(model, batch_size or 1)  # per image, what a training forward keeps for backward
    for i, layer in enumerate(model.layers):
        ins = [fields[j] for j in model.sources[i]]
        fields[i] = None
        if len(layer.out_shape) == 3 and all(f is not None for f in ins):
            rf, jump = max(ins)
            (kh, kw), (sh, sw) = layer.receptive()
            fields[i] = ((rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1]), (jump[0] * sh, jump[1] * sw))
        rows.append(_row(model, i, fields[i], i in frozen))
    total, trainable = sum(r["params"] for r in rows), sum(r["params"] for r in rows if not r["frozen"])
    buffers = sum(r["buffers"] for r in rows)
    out = {
        "input_shape": list(arch.input),
        "layers": rows,
        "total_params": total,
        "trainable_params": trainable,
        "non_trainable_params": buffers,
        "total_macs": sum(r["macs"] for r in rows),
        "model_mb": (total + buffers) * BYTES / 1e6,
        "classes": model.n_classes,
        "output": model.head,
    }
    if batch_size:
        slots = {"adam": 2, "adamw": 2, "sgd": 1 if momentum else 0}[optimizer]
        weights = (trainable * (2 + slots) + total - trainable + buffers) * BYTES   # params, grads, optimizer state
        largest = max(r["activation_size"] for r in rows) * BYTES
        acts = batch_size * (act_bytes + 2 * largest)                   # forward caches + backward in flight
        out["batch_size"] = batch_size
        out["train_memory_mb"] = (weights + acts) / 1e6
    return out


def kept_bytes(model, batch_size):
    """Bytes per image a training forward keeps for backward: each output that its layer keeps
    (keeps_output) or a reader keeps (keeps_input), the network's input where its first reader
    keeps it, and each layer's scratch (im2col columns, argmax, masks) and kept z. An output no
    backward reads (batchnorm's before a relu or an add) lives only until its readers have run."""
    from .graph import INPUT

    readers = {INPUT: [i for i, src in enumerate(model.sources) if INPUT in src], **dict(enumerate(model.readers))}
    kept = lambda j: any(model.layers[r].keeps_input for r in readers[j])  # noqa: E731
    total = math.prod(model.input_shape) * BYTES if kept(INPUT) else 0
    for i, layer in enumerate(model.layers):
        if layer.keeps_output or kept(i):
            total += math.prod(layer.out_shape) * BYTES
        total += layer.scratch_bytes(batch_size) + layer.activation_bytes()
    return total


def _row(model, i, field, frozen):
    """One layer's row of the table; field: its (receptive field, jump), or None once flat."""
    from .graph import INPUT

    layer = model.layers[i]
    return {
        "index": i,
        "type": layer.kind,
        "from": ["input" if j == INPUT else j for j in model.sources[i]],
        "config": layer.describe(),
        "activation": (model.head if i == len(model.layers) - 1 else layer.activation)
        if layer.standalone_function() is None else "",
        "output_shape": list(layer.out_shape),
        "params": layer.n_params(),
        "buffers": layer.n_buffers(),
        "macs": layer.macs(),
        "activation_size": math.prod(layer.out_shape),
        "receptive_field": list(field[0]) if field else None,
        "frozen": frozen,
    }
