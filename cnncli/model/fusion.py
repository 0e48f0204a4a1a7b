"""What runs fused: two layers' work done in one pass over the map.

fold: inference (and a frozen backbone in training) folds each conv -> batchnorm (-> activation)
chain into the conv, and a depthwise conv computes the 1x1 convs around it band by band;
Model.inference_plan keeps the plan.
activations_taken: in every mode, a batchnorm applies the activation layer after it in its own
normalising pass, where that activation's backward needs only its output.
row_gradients: in backward, a batchnorm hands its dx to the 1x1 conv before it as rows to compute,
never written whole.
"""

from ..layers.functions import FUNCTIONS


def fold(model, within=None):
    """Inference folds each conv -> batchnorm (-> activation) chain into the conv: with the
    running statistics batchnorm is y = s x + t per channel, s = weight / sqrt(var + eps),
    t = bias - mean s, so the conv takes filters w s and bias b s + t (in float64), and applies
    the activation after them itself. Winograd filters are transformed here, once per plan
    (Model.inference_plan keeps it). -> {conv index: (filters, bias, activation, alpha), folded index: None}.
    Folded only where the conv is linear, each link has one reader, and the chain does not
    end the network (its softmax / sigmoid belongs to the loss). Winograd convs that fold
    nothing are in the plan too, their filters transformed once per plan. Which layer folds
    what is each layer's answer: absorbs_affine / inference_entry (conv), inference_affine
    (batchnorm), standalone_function (activation). within: only these layers fold (all: None)."""
    plan, last = {}, len(model.layers) - 1
    inside = (lambda i: True) if within is None else within.__contains__
    for i, layer in enumerate(model.layers):
        if not inside(i):
            continue
        j = model.readers[i][0] if len(model.readers[i]) == 1 and inside(model.readers[i][0]) else None
        affine = model.layers[j].inference_affine() if j is not None and j != last else None
        if affine is None or not layer.absorbs_affine():
            entry = layer.inference_entry() if i != last else None
            if entry is not None:
                plan[i] = entry
            continue
        act, alpha = "linear", layer.alpha
        if len(model.readers[j]) == 1 and model.readers[j][0] != last:
            k = model.readers[j][0]
            function = model.layers[k].standalone_function() if inside(k) else None
            if function is not None:
                act, alpha = function
                plan[k] = None
        plan[i] = layer.inference_entry(affine, act, alpha)
        plan[j] = None
    return _pointwise_stages(model, plan)


def _pointwise_stages(model, plan):
    """An inverted residual block's 1x1 expansion and 1x1 projection, with what they folded, run
    inside the depthwise conv between them (kernels/depthwise.banded_depthwise_forward: neither
    the expanded map nor the depthwise output is whole in memory). The depthwise entry gets two
    more items, expand and project, each (the 1x1 layer's index, filters, bias, activation,
    alpha) or None; the 1x1 layers' own entries become None: the expansion passes its input on,
    the projection its input, which is then the depthwise conv's (projected) output. Where each
    link has one reader and the layers say they can (pointwise, takes_pointwise)."""
    for k, entry in list(plan.items()):
        if entry is None or len(entry) != 4 or not model.layers[k].takes_pointwise():
            continue
        i = model.sources[k][0]
        while i >= 0 and plan.get(i, 0) is None and len(model.readers[i]) == 1:
            i = model.sources[i][0]     # a batchnorm or activation folded into the conv before it
        j = k
        while len(model.readers[j]) == 1 and plan.get(model.readers[j][0], 0) is None:
            j = model.readers[j][0]     # ... and those folded into this one
        p = model.readers[j][0] if len(model.readers[j]) == 1 else None
        stages = [None, None]
        for side, m in enumerate((i, p)):   # a 1x1 conv in the plan folded a batchnorm: it has one reader
            if m is not None and m >= 0 and plan.get(m) and len(plan[m]) == 4 and model.layers[m].pointwise():
                stages[side] = (m,) + plan[m]
                plan[m] = None
        if stages != [None, None]:
            plan[k] = entry + tuple(stages)
    return plan


def activations_taken(model):
    """{i: j}: layer i (batchnorm) applies the activation layer j that alone reads it, in its
    own pass, where j's backward needs only its output (relu, relu6, ...): one pass over the
    map instead of two. Measured on MobileNetV2 (batch 16, one training step): see the commit."""
    takes, last = {}, len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        j = model.readers[i][0] if len(model.readers[i]) == 1 else None
        if j is None or j == last or not layer.takes_activation or tuple(model.sources[j]) != (i,):
            continue
        nxt = model.layers[j]
        function = nxt.standalone_function()
        if function is not None and function[0] != "softmax" and FUNCTIONS[function[0]].keeps == "output":
            takes[i] = j
    return takes


def row_gradients(model):
    """{j: i}: layer j (batchnorm) gives its input gradient to layer i (a linear 1x1 conv), its
    only source, which j alone reads, as rows computed a run at a time inside i's backward:
    the (M, C) dx is neither written nor read back. MobileNetV2, batch 16: see the commit."""
    given = {}
    for j, layer in enumerate(model.layers):
        src = model.sources[j]
        if not layer.gives_row_gradient or len(src) != 1 or src[0] < 0:    # < 0: the network's input
            continue
        i = src[0]
        if tuple(model.readers[i]) == (j,) and model.layers[i].takes_row_gradient():
            given[j] = i
    return given
