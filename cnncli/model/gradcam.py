"""Grad-CAM (Selvaraju et al. 2017): where in the image a class's score comes from.

For a layer's feature map A (N, h, w, C) and a class score y (the pre-softmax logit):
  alpha_c = mean over (h, w) of dy/dA[..., c]         one weight per channel
  cam     = relu(sum_c alpha_c A[..., c])             (N, h, w): positive evidence only
  cam    /= max(cam)                                  per image, to [0, 1] (all zero stays zero)
then resized to the input's size (bilinear) and divided by its peak again. The gradient is cnncli's own backward through the
graph (Model.forward(record=True, keep=...) and Model.backward(keep=...)): chains and graphs alike.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import CnnError

def is_spatial(layer):
    """A layer whose output is a feature map (h, w, c) with more than one position."""
    shape = layer.out_shape
    return len(shape) == 3 and shape[0] * shape[1] > 1


def default_layer(model):
    """The last conv-like layer whose output is still a spatial map (for a chain: the last conv;
    for a residual net: the last block's add), else the last spatial layer of any kind."""
    spatial = [i for i, layer in enumerate(model.layers) if is_spatial(layer)]
    conv_like = [i for i in spatial if model.layers[i].conv_like]   # each layer's answer (pooling: no)
    if not spatial:
        raise CnnError("this network has no layer with a spatial output (h x w x c) to explain: "
                       "Grad-CAM needs a convolutional network")
    return (conv_like or spatial)[-1]


def check_layer(model, index, where="--layer"):
    """A layer index the user gave -> the index, or a one-line CnnError naming what to give."""
    spatial = [i for i, layer in enumerate(model.layers) if is_spatial(layer)]
    n = len(model.layers)
    hint = f"give one of {_ranges(spatial)} (layers with a spatial output)" if spatial else \
        "this network has no layer with a spatial output"
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise CnnError(f"{where} {index}: the network has layers 0..{n - 1}; {hint}")
    layer = model.layers[index]
    if index not in spatial:
        shape = "x".join(map(str, layer.out_shape))
        raise CnnError(f"{where} {index}: layers[{index}] ({layer.kind}) outputs {shape}, not a spatial "
                       f"map (h x w x c with h x w > 1); {hint}")
    return int(index)


def _ranges(indices):
    """[1, 2, 3, 5] -> '1-3, 5'."""
    out, start = [], None
    for k, i in enumerate(indices):
        if start is None:
            start = i
        if k + 1 == len(indices) or indices[k + 1] != i + 1:
            out.append(str(start) if start == i else f"{start}-{i}")
            start = None
    return ", ".join(out)


def score_gradient(model, classes):
    """dScore/dlogits for each image's class: one-hot on the logit (softmax head); the single
    logit's sign for a sigmoid head (class 1's score is the logit, class 0's its negative)."""
    n = len(classes)
    if model.head == "sigmoid":
        d = np.where(np.asarray(classes) == 1, 1.0, -1.0).reshape(n, 1)
    else:
        d = np.zeros((n, model.n_classes))
        d[np.arange(n), classes] = 1.0
    return d.astype(model.dtype)


def map_and_gradient(model, x, layer, classes=None, keep=()):
    """Inference-mode forward keeping layer's map (and the maps in keep); backward from the
    score of `classes` (default: each image's predicted class).
    -> (logits (N, K), A (N, h, w, C), dScore/dA, {index: map} for keep)."""
    logits, maps = model.forward(x, training=False, record=True, keep=tuple(sorted({layer, *keep})))
    if classes is None:
        classes = predicted(model, logits)
    model.zero_grad()
    grads = model.backward(score_gradient(model, classes), keep=(layer,))
    model.zero_grad()  # leave no gradient behind for a training step that might follow
    return logits, maps[layer], grads[layer], maps


def predicted(model, logits):
    return (logits[:, 0] > 0).astype(np.int64) if model.head == "sigmoid" else logits.argmax(axis=1)


def cam_from(fmap, grad):
    """(N, h, w, C) map and its gradient -> (N, h, w) Grad-CAM in [0, 1] (see the module's formula)."""
    alpha = grad.mean(axis=(1, 2), dtype=np.float64)                    # (N, C)
    return normalise(np.maximum(np.einsum("nhwc,nc->nhw", fmap.astype(np.float64), alpha), 0.0))


def normalise(maps):
    """(N, h, w) >= 0 -> each divided by its peak (an all-zero map stays zero)."""
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def heatmaps(cams, height, width):
    """Grad-CAMs -> the heatmaps drawn over the input: resized, and peaking at 1 again (the
    resize samples between the cells' centres, so it may miss a peak)."""
    return normalise(upsample(cams, height, width))


def upsample(cams, height, width):
    """(N, h, w) -> (N, height, width), bilinear (Pillow), as the heatmap is laid over the input."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), "F").resize(
        (width, height), Image.Resampling.BILINEAR)) for c in cams]) if len(cams) else \
        np.zeros((0, height, width), np.float32)


def peak(cam):
    """(H, W) heatmap -> (y, x) of its largest value (the first, in row order)."""
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(y), int(x)


@dataclass
class Explained:
    """Grad-CAM of one batch."""
    layer: int
    classes: np.ndarray    # (N,) the class each heatmap explains
    probs: np.ndarray      # (N, K) class probabilities
    cams: np.ndarray       # (N, h, w) at the layer's resolution, in [0, 1]
    heatmaps: np.ndarray   # (N, H, W) resized to the input
    maps: dict             # {layer index: (N, h, w, c)} feature maps kept on request


def grad_cam(model, x, layer=None, classes=None, keep=(), temperature=1.0):
    """x (N, H, W, C) normalised input -> Explained. layer: default_layer(model) when None;
    classes: each image's predicted class when None; probs are softmax(logits / temperature)."""
    from ..engine.losses import Loss

    layer = default_layer(model) if layer is None else check_layer(model, layer)
    logits, fmap, grad, maps = map_and_gradient(model, x, layer, classes, keep)
    if classes is None:
        classes = predicted(model, logits)
    cams = cam_from(fmap, grad)
    probs = Loss(model.head).probabilities(logits / logits.dtype.type(temperature))
    return Explained(layer, np.asarray(classes), probs, cams, heatmaps(cams, x.shape[1], x.shape[2]),
                     {i: m for i, m in maps.items() if i in keep})
