"""The numbers behind `cnncli inspect`: per-layer shapes, parameters, cost; walked from shapes
alone, so no kernel is compiled and numba is never imported."""

import math

from .budgets import KEEP_COLUMNS_BYTES

BYTES = 4  # float32


def summarize(arch, batch_size=None, optimizer="adam", momentum=0.9):
    """Architecture -> {"layers": [{index, type, config, activation, output_shape, params, buffers,
    macs, activation_size, receptive_field}], total_params, non_trainable_params, total_macs,
    model_mb, classes, output, and with batch_size: train_memory_mb}."""
    model = arch.build(build_params=False)
    rows = []
    rf, jump = (1, 1), (1, 1)  # receptive field and the input-pixel distance between outputs
    spatial = True
    act_bytes = math.prod(arch.input) * BYTES  # per image: the input batch itself
    for i, layer in enumerate(model.layers):
        (kh, kw), (sh, sw) = layer.receptive()
        if spatial and len(layer.out_shape) == 3:
            rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
            jump = (jump[0] * sh, jump[1] * sw)
        elif spatial:  # flatten / global pooling: every output sees the whole image
            spatial = False
        out_elems = math.prod(layer.out_shape)
        act_bytes += out_elems * BYTES + _scratch_bytes(layer, batch_size or 1)
        rows.append({
            "index": i,
            "type": layer.kind,
            "config": layer.describe(),
            "activation": layer.activation if layer.kind != "activation" else "",
            "output_shape": list(layer.out_shape),
            "params": layer.n_params(),
            "buffers": layer.n_buffers(),
            "macs": layer.macs(),
            "activation_size": out_elems,
            "receptive_field": list(rf) if spatial else None,
        })
    trainable = sum(r["params"] for r in rows)
    buffers = sum(r["buffers"] for r in rows)
    out = {
        "input_shape": list(arch.input),
        "layers": rows,
        "total_params": trainable,
        "non_trainable_params": buffers,
        "total_macs": sum(r["macs"] for r in rows),
        "model_mb": (trainable + buffers) * BYTES / 1e6,
        "classes": model.n_classes,
        "output": model.head,
    }
    if batch_size:
        slots = {"adam": 2, "adamw": 2, "sgd": 1 if momentum else 0}[optimizer]
        weights = (trainable * (2 + slots) + buffers) * BYTES            # params, grads, optimizer state
        largest = max(r["activation_size"] for r in rows) * BYTES
        acts = batch_size * (act_bytes + 2 * largest)                   # forward caches + backward in flight
        out["batch_size"] = batch_size
        out["train_memory_mb"] = (weights + acts) / 1e6
    return out


def _scratch_bytes(layer, batch_size):
    """Per-image memory a layer keeps from forward to backward beyond its output."""
    if layer.kind == "conv":
        fh, fw = layer.size
        if (fh, fw, *layer.stride) == (1, 1, 1, 1) and not any(layer.pads):
            return 0
        oh, ow, _ = layer.out_shape
        cols = oh * ow * fh * fw * layer.in_shape[2] * BYTES  # im2col columns, kept when small
        return cols if cols * batch_size <= KEEP_COLUMNS_BYTES else 0
    if layer.kind in ("maxpool", "globalmaxpool"):
        return math.prod(layer.out_shape) * 4  # int32 argmax
    if layer.kind == "dropout":
        return math.prod(layer.out_shape) * BYTES  # mask
    return 0
