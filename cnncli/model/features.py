"""The penultimate layer's features (what the last layer reads) with the logits, in one inference
pass: the class centres of "none of these" are taken in this space, and audit's regressions."""

import numpy as np

from .graph import INPUT


def penultimate(model):
    """The index of the layer the last layer reads (INPUT for a one-layer network). The last layer
    reads one: Model requires it to end in softmax or sigmoid, which no multi-input kind does."""
    return model.sources[-1][0]


def logits_and_features(model, mean, std, images, batch_size=64, pool=False):
    """uint8 images (N, H, W, C) -> (logits (N, K), penultimate features (N, D)), inference mode.
    pool: a feature map is averaged over its height and width (D = its channels), else flattened."""
    from ..kernels.augment import prepare_batch

    pen = penultimate(model)
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        x = prepare_batch(np.asarray(images[start:start + batch_size]), mean, std)
        if pen == INPUT:
            z, f = model.forward(x), x
        else:
            z, kept = model.forward(x, keep=(pen,))
            f = kept[pen]
        logits.append(np.asarray(z, np.float64))
        f = f.mean(axis=(1, 2)) if pool and f.ndim == 4 else f
        feats.append(np.asarray(f, np.float64).reshape(len(x), -1))
    return np.concatenate(logits), np.concatenate(feats)
