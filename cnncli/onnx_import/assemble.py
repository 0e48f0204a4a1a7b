"""The emitted layers -> cnncli's architecture: the head, activations fused into the conv /
dense / add before them, chained adds joined, names made unique, `from` written by name where a
layer reads anything but the one before it."""

import re

from ..layers import LAYERS
from ..model import INPUT
from .values import Emitted, Unsupported



def _fuses(kind):
    """Does this kind take a fused `activation:` (conv, dense, add)?"""
    return LAYERS[kind].activation_key == "activation"


def _standalone(kind):
    """Is this kind an activation function alone?"""
    return LAYERS[kind].activation_key == "fn"


def head(imp):
    """Bind the classifier head to the layer computing the logits."""
    src = imp.src
    node = next((n for n in reversed(imp.nodes) if src.logits in n.output), imp.nodes[-1])
    v = imp.values.get(src.logits)
    if v is None:
        raise Unsupported(node, "the output is a constant")
    index = imp.materialize(v, node)
    if index == INPUT or len(v.shape) != 1:
        raise Unsupported(node, f"the output is {'x'.join(map(str, v.onnx_shape))} per image, not one "
                          "score per class")
    if index != len(imp.layers) - 1:
        raise Unsupported(node, "the output is not the last layer computed")
    if src.head == "sigmoid" and v.shape != (1,):
        raise Unsupported(node, "a sigmoid head over more than one score")
    last = imp.layers[-1]
    imp.layers.append(Emitted("activation", {"fn": src.head}, [index], f"{last.name}.{src.head}",
                              tensor=src.output))
    if src.head_found:
        imp.folded[f"{src.head} at the end: the head"] += 1


def fuse(layers):
    """Standalone activations into the conv / dense / add they alone read, where that layer has
    no other reader and is not a layer boundary of a cnncli export -> the new list."""
    readers = _readers(layers)
    drop = set()
    for i, layer in enumerate(layers):
        if not _standalone(layer.kind) or len(layer.sources) != 1 or layer.sources[0] == INPUT:
            continue
        j = layer.sources[0]
        base = layers[j]
        if _fuses(base.kind) and base.args.get("activation", "linear") == "linear" and readers[j] == [i] \
                and not base.sealed:
            base.args["activation"] = layer.args["fn"]
            if "alpha" in layer.args:
                base.args["alpha"] = layer.args["alpha"]
            base.sealed, base.tensor = layer.sealed, layer.tensor
            drop.add(i)
            _redirect(layers, i, j)
    return _without(layers, drop)


def join_adds(layers):
    """add(add(a, b), c) -> add(a, b, c) where the inner one is read only there and is not a
    layer boundary (cnncli's add sums in that order: the same numbers); concat alike."""
    readers = _readers(layers)
    drop = set()
    for i, layer in enumerate(layers):
        if LAYERS[layer.kind].n_inputs is not None:
            continue
        j = layer.sources[0]
        if j != INPUT and LAYERS[layers[j].kind] is LAYERS[layer.kind] and readers[j] == [i] and not layers[j].sealed \
                and layers[j].args.get("activation", "linear") == "linear":
            layer.sources = layers[j].sources + layer.sources[1:]
            drop.add(j)
    return _without(layers, drop)


def _readers(layers):
    readers = [[] for _ in layers]
    for i, layer in enumerate(layers):
        for j in layer.sources:
            if j != INPUT:
                readers[j].append(i)
    return readers


def _redirect(layers, old, new):
    for layer in layers:
        layer.sources = [new if j == old else j for j in layer.sources]


def _without(layers, drop):
    """Remove the layers in drop (nothing reads them any more) and renumber the sources."""
    index, kept = {INPUT: INPUT}, []
    for i, layer in enumerate(layers):
        if i not in drop:
            index[i] = len(kept)
            kept.append(layer)
    for layer in kept:
        layer.sources = [index[j] for j in layer.sources]
    return kept


def specs(layers):
    """-> [{kind: {args..., name, from}}], the architecture's `layers:` list."""
    names, taken = [], set()
    for layer in layers:
        name = re.sub(r"\s+", "_", layer.name.strip()) or layer.kind
        base, k = name, 1
        while name in taken or name == "input":
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        names.append(name)
    out = []
    for i, layer in enumerate(layers):
        args = dict(layer.args)
        args["name"] = names[i]
        refs = ["input" if j == INPUT else names[j] for j in layer.sources]
        if len(layer.sources) > 1:
            args["from"] = refs
        elif layer.sources[0] != i - 1:
            args["from"] = refs[0]
        out.append({layer.kind: args})
    return out
