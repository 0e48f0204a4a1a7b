"""Slow, obviously-correct twins of every kernel, in NCHW with explicit loops.

These read like the textbook: pad with zeros, slide the window, multiply and add.
They take the boundary (PyTorch / ONNX) layout, so they also check the layout conversion.
"""

import math

import numpy as np


def pad_nchw(x, pads, value=0.0):
    t, b, l, r = pads
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def out_size(h, f, s, lo, hi):
    return (h + lo + hi - f) // s + 1


def conv2d(x, w, b, stride, pads, groups=1):
    """x (N, C, H, W), w (F, C/g, FH, FW) -> (N, F, OH, OW); cross-correlation, no flip.
    groups g: filters [k F/g, (k+1) F/g) read only channels [k C/g, (k+1) C/g) (PyTorch's rule)."""
    if groups > 1:
        cs, fs = x.shape[1] // groups, w.shape[0] // groups
        return np.concatenate([conv2d(x[:, k * cs:(k + 1) * cs], w[k * fs:(k + 1) * fs],
                                      None if b is None else b[k * fs:(k + 1) * fs], stride, pads)
                               for k in range(groups)], axis=1)
    n, c, h, wd = x.shape
    f, _, fh, fw = w.shape
    sh, sw = stride
    xp = pad_nchw(x, pads)
    oh, ow = out_size(h, fh, sh, pads[0], pads[1]), out_size(wd, fw, sw, pads[2], pads[3])
    y = np.zeros((n, f, oh, ow), dtype=np.float64)
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for q in range(ow):
                    window = xp[i, :, r * sh:r * sh + fh, q * sw:q * sw + fw]
                    y[i, k, r, q] = np.sum(window * w[k]) + (b[k] if b is not None else 0.0)
    return y


def conv2d_backward(x, w, dy, stride, pads, groups=1):
    """-> (dx, dw, db) for conv2d, by the same loops run backwards (per group for groups > 1)."""
    if groups > 1:
        cs, fs = x.shape[1] // groups, w.shape[0] // groups
        parts = [conv2d_backward(x[:, k * cs:(k + 1) * cs], w[k * fs:(k + 1) * fs],
                                 dy[:, k * fs:(k + 1) * fs], stride, pads) for k in range(groups)]
        dxs, dws, dbs = zip(*parts)
        return np.concatenate(dxs, axis=1), np.concatenate(dws, axis=0), np.concatenate(dbs)
    n, c, h, wd = x.shape
    f, _, fh, fw = w.shape
    sh, sw = stride
    xp = pad_nchw(x, pads)
    dxp = np.zeros_like(xp, dtype=np.float64)
    dw = np.zeros(w.shape, dtype=np.float64)
    _, _, oh, ow = dy.shape
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for q in range(ow):
                    g = dy[i, k, r, q]
                    dw[k] += g * xp[i, :, r * sh:r * sh + fh, q * sw:q * sw + fw]
                    dxp[i, :, r * sh:r * sh + fh, q * sw:q * sw + fw] += g * w[k]
    t, b, l, r_ = pads
    dx = dxp[:, :, t:t + h, l:l + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def _windows(h, wd, size, stride, pads, oh, ow):
    """Yield (r, q, rows, cols) of real (unpadded) cells under each window."""
    for r in range(oh):
        for q in range(ow):
            r0, q0 = r * stride[0] - pads[0], q * stride[1] - pads[2]
            rows = [a for a in range(r0, r0 + size[0]) if 0 <= a < h]
            cols = [a for a in range(q0, q0 + size[1]) if 0 <= a < wd]
            yield r, q, rows, cols


def pool2d(x, size, stride, pads, mode):
    """x (N, C, H, W) -> (N, C, OH, OW); padded cells never win a max, never count in a mean."""
    n, c, h, wd = x.shape
    oh, ow = out_size(h, size[0], stride[0], pads[0], pads[1]), out_size(wd, size[1], stride[1], pads[2], pads[3])
    y = np.zeros((n, c, oh, ow))
    for r, q, rows, cols in _windows(h, wd, size, stride, pads, oh, ow):
        block = x[:, :, rows][:, :, :, cols]
        y[:, :, r, q] = block.max(axis=(2, 3)) if mode == "max" else block.mean(axis=(2, 3))
    return y


def pool2d_backward(x, dy, size, stride, pads, mode):
    n, c, h, wd = x.shape
    _, _, oh, ow = dy.shape
    dx = np.zeros(x.shape)
    for r, q, rows, cols in _windows(h, wd, size, stride, pads, oh, ow):
        for i in range(n):
            for k in range(c):
                block = x[i, k][np.ix_(rows, cols)]
                if mode == "max":
                    a, b = np.unravel_index(np.argmax(block), block.shape)
                    dx[i, k, rows[a], cols[b]] += dy[i, k, r, q]
                else:
                    dx[i, k][np.ix_(rows, cols)] += dy[i, k, r, q] / block.size
    return dx


def activation(z, fn, alpha=0.01):
    if fn == "linear":
        return z
    if fn == "relu":
        return np.maximum(z, 0)
    if fn == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if fn == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if fn == "tanh":
        return np.tanh(z)
    # PyTorch's definitions (torch.nn.functional), written out
    if fn == "relu6":
        return np.minimum(np.maximum(z, 0), 6)
    if fn == "hardsigmoid":             # relu6(z + 3) / 6, not ONNX's default slope 0.2
        return np.minimum(np.maximum(z + 3, 0), 6) / 6
    if fn == "hardswish":
        return z * np.minimum(np.maximum(z + 3, 0), 6) / 6
    if fn == "silu":
        return z / (1 + np.exp(-z))
    if fn == "gelu":                    # z Phi(z), Phi the standard normal CDF
        return z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    if fn == "gelu_tanh":
        return 0.5 * z * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    if fn == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(fn)


def batchnorm(x, weight, bias, mean, var, eps, axis):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = lambda v: np.asarray(v).reshape(shape)  # noqa: E731
    return (x - r(mean)) / np.sqrt(r(var) + eps) * r(weight) + r(bias)


def network_forward(model, state, x_nchw):
    """Inference of a cnncli Model from its boundary state dict, all in NCHW, float64: each layer
    reads the outputs its `sources` name (-1: the input), as the graph says."""
    from cnncli.layers.base import resolve_padding

    outs = {-1: x_nchw.astype(np.float64)}
    for i, layer in enumerate(model.layers):
        p = {k[len(f"layers.{i}."):]: v.astype(np.float64) for k, v in state.items() if k.startswith(f"layers.{i}.")}
        ins = [outs[j] for j in model.sources[i]]
        x = ins[0]
        kind = layer.kind
        if kind == "conv":
            pads, _ = resolve_padding(layer.padding, x.shape[2:], layer.size, layer.stride)
            conv = conv2d(x, p["weight"], p.get("bias"), layer.stride, pads, groups=getattr(layer, "groups", 1))
            x = activation_nchw(conv, layer.activation, layer.alpha)
        elif kind in ("maxpool", "avgpool"):
            pads, _ = resolve_padding(layer.padding, x.shape[2:], layer.size, layer.stride)
            x = pool2d(x, layer.size, layer.stride, pads, kind[:3])
        elif kind == "globalavgpool":
            x = x.mean(axis=(2, 3))
        elif kind == "globalmaxpool":
            x = x.max(axis=(2, 3))
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "dense":
            x = x @ p["weight"].T + (p["bias"] if "bias" in p else 0.0)
            x = activation(x, layer.activation, layer.alpha)
        elif kind == "batchnorm":
            x = batchnorm(x, p["weight"], p["bias"], p["running_mean"], p["running_var"], layer.eps, 1)
        elif kind == "dropout":
            pass
        elif kind == "activation":
            x = activation_nchw(x, layer.activation, layer.alpha)
        elif kind == "add":
            x = activation_nchw(sum(ins), layer.activation, layer.alpha)
        elif kind == "concat":
            x = np.concatenate(ins, axis=1)  # channels of NCHW maps, or features of vectors
        elif kind == "lrn":
            x = lrn(x, layer.size, layer.alpha, layer.beta, layer.bias)
        elif kind == "shuffle":
            x = shuffle(x, layer.groups)
        elif kind == "pad":
            x = zero_pad(x, layer.pads)
        elif kind == "slice":
            x = np.stack([x[:, c] for c in range(layer.start, layer.stop)], axis=1)   # channels of NCHW or (N, C)
        elif kind == "scale":
            x = x * ins[1].reshape(ins[1].shape + (1,) * (x.ndim - 2))   # (N, C) over (N, C, H, W)
        else:
            raise ValueError(kind)
        outs[i] = x
    # the model's last layer computes logits (the loss fuses the head): the head applied here
    return activation(outs[len(model.layers) - 1], model.head)


def lrn(x, size, alpha, beta, bias):
    """ONNX LRN over the channels of (N, C, H, W): x_c / (bias + alpha/size * sum of x_i^2 for i
    from c - floor((size-1)/2) to c + ceil((size-1)/2), within 0..C-1)^beta (the spec's words)."""
    c = x.shape[1]
    y = np.empty_like(x)
    for k in range(c):
        lo, hi = max(0, k - (size - 1) // 2), min(c - 1, k + math.ceil((size - 1) / 2))
        square_sum = np.sum(x[:, lo:hi + 1] ** 2, axis=1)
        y[:, k] = x[:, k] / (bias + alpha / size * square_sum) ** beta
    return y


def zero_pad(x, pads):
    """(N, C, H, W) -> (N, C, H + t + b, W + l + r): cell (i, j) is x[i - t, j - l] where that is
    inside x, else 0 (pads (t, b, l, r))."""
    t, b, left, r = pads
    n, c, h, w = x.shape
    y = np.zeros((n, c, h + t + b, w + left + r))
    for i in range(h + t + b):
        for j in range(w + left + r):
            if 0 <= i - t < h and 0 <= j - left < w:
                y[:, :, i, j] = x[:, :, i - t, j - left]
    return y


def shuffle(x, groups):
    """ShuffleNet's channel shuffle of (N, C, H, W): output channel j * g + i is input channel
    i * (C / g) + j."""
    c = x.shape[1]
    y = np.empty_like(x)
    for i in range(groups):
        for j in range(c // groups):
            y[:, j * groups + i] = x[:, i * (c // groups) + j]
    return y


def activation_nchw(x, fn, alpha=0.01):
    if fn == "softmax" and x.ndim == 4:  # over channels
        return np.moveaxis(activation(np.moveaxis(x, 1, -1), fn), -1, 1)
    return activation(x, fn, alpha)


def augment_image(src, m, mean, std, gain=1.0, contrast=1.0, saturation=1.0, boxes=(), size=0):
    """One uint8 image (h, w, c) -> float64 (h, w, c), the textbook way: for each output cell, the
    source point m @ (i, j, 1) (moved onto the edge cell when within half a cell of it); bilinear
    over the four cells around it, each cell colour-adjusted and normalised on its own, a cell
    outside the image being the mean (0); then cutout squares."""
    h, w, c = src.shape
    img = src.astype(np.float64)
    gray = img @ np.array([0.299, 0.587, 0.114]) if c == 3 else img[..., 0]

    def cell(y, x):   # the colour-adjusted, normalised value of one source cell
        if not (0 <= y < h and 0 <= x < w):
            return np.zeros(c)
        v = img[y, x] * gain
        v = contrast * v + (1 - contrast) * gain * gray.mean()
        if c == 3:
            v = saturation * v + (1 - saturation) * (v @ np.array([0.299, 0.587, 0.114]))
        return (v / 255.0 - np.asarray(mean)) / np.asarray(std)

    out = np.zeros((h, w, c))
    for i in range(h):
        for j in range(w):
            y = m[0][0] * i + m[0][1] * j + m[0][2]
            x = m[1][0] * i + m[1][1] * j + m[1][2]
            y = min(max(y, 0), h - 1) if -0.5 <= y <= h - 0.5 else y   # the image covers [-0.5, h - 0.5]
            x = min(max(x, 0), w - 1) if -0.5 <= x <= w - 0.5 else x
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            fy, fx = y - y0, x - x0
            out[i, j] = ((1 - fy) * (1 - fx) * cell(y0, x0) + (1 - fy) * fx * cell(y0, x0 + 1)
                         + fy * (1 - fx) * cell(y0 + 1, x0) + fy * fx * cell(y0 + 1, x0 + 1))
    for top, left in boxes:
        out[max(top, 0):max(top + size, 0), max(left, 0):max(left + size, 0)] = 0
    return out


def mix(x, partner, lam, box):
    """The mixing of a batch, image by image: mixup blends with the partner, cutmix pastes the
    partner's box (y0, y1, x0, x1); a box of -1s means mixup."""
    out = np.zeros(x.shape)
    for b in range(len(x)):
        p = partner[b]
        if box[b][0] < 0:
            out[b] = lam[b] * x[b].astype(np.float64) + (1 - lam[b]) * x[p].astype(np.float64)
        else:
            out[b] = x[b]
            y0, y1, x0, x1 = box[b]
            out[b, y0:y1, x0:x1] = x[p, y0:y1, x0:x1]
    return out


def ema(weights_per_step, decay):
    """The moving average after each step, in float64: avg_0 = w_0, then for step t = 1, 2, ...
    d = min(decay, (1 + t) / (10 + t)) and avg_t = d avg_(t-1) + (1 - d) w_t."""
    avg = [np.asarray(w, np.float64) for w in weights_per_step[0]]
    for t, ws in enumerate(weights_per_step[1:], start=1):
        d = min(decay, (1 + t) / (10 + t))
        avg = [d * a + (1 - d) * np.asarray(w, np.float64) for a, w in zip(avg, ws)]
    return avg


def near_pairs(hashes, thumbs, max_bits, max_rms):
    """hashes (N, V), thumbs (N, V, T) -> [(i, j, bits)] for i < j: duplicates.distance of every
    pair, one at a time."""
    from cnncli.data.duplicates import distance
    n = len(hashes)
    found = []
    for i in range(n):
        for j in range(i + 1, n):
            d = int(distance(hashes[i], hashes[j], thumbs[i], thumbs[j], max_rms))
            if d <= max_bits:
                found.append((i, j, d))
    return found
