"""uint8 images -> augmented, normalised float32 batch in one pass; then the mixing of image pairs.

augment, per output cell (i, j) of image b (pixel units until the last line):
  (y, x) = M[b] (i, j, 1)                    source coordinates: one affine map per image (flips,
                                             shifts, resized crop, rotation, scale, shear, translation)
  v[ch]  = sum_k a_k src[b, y_k, x_k, ch]    bilinear: the four cells around (y, x), weights a_k;
                                             exact[b] (an integer map): the one cell (y, x), a = 1;
                                             the image covers [-0.5, h - 0.5]: a point within half a
                                             cell of the edge reads the edge cell
  s      = sum_k a_k over taps in the image  cells outside are the mean, 0 after normalising:
                                             they add nothing, so every constant below scales by s
  v     <- v gain[b]                                                 brightness
  v     <- con[b] v + (1 - con[b]) s gain[b] gray_mean[b]            contrast, gray_mean of src[b]
  v     <- sat[b] v + (1 - sat[b]) gray(v)                           saturation (3 channels)
  out    = v scale[ch] + s shift[ch]         scale = 1 / (255 std), shift = -mean / std
  out    = 0 in the cutout squares boxes[b, k] (top-left corners) of side `size`
gray(v) = 0.299 r + 0.587 g + 0.114 b (ITU-R 601, as decoding), or v for one channel.

mix, per image b with partner p[b] (another image of the same batch):
  lam[b] >= 0, box[b, 0] < 0:   out[b] = lam[b] a[b] + (1 - lam[b]) a[p[b]]       mixup
  box[b] = (y0, y1, x0, x1):    out[b] = a[p[b]] inside the box, a[b] elsewhere   cutmix
"""

import numpy as np
from numba import njit

from . import JIT


@njit(inline="always")
def _bilinear(src, b, y0, x0, ch, a00, a01, a10, a11):
    # channel ch's four taps, each sum rounded to float32 (as when they were added in an array)
    t = np.float32(a00 * np.float32(src[b, y0, x0, ch]))
    t = np.float32(t + a01 * np.float32(src[b, y0, x0 + 1, ch]))
    t = np.float32(t + a10 * np.float32(src[b, y0 + 1, x0, ch]))
    return np.float32(t + a11 * np.float32(src[b, y0 + 1, x0 + 1, ch]))


@njit(inline="always")
def _cell(y, h):
    """A source coordinate -> (the cell above / left of it, the fraction past it). The image
    covers [-0.5, h - 0.5]: within half a cell of an edge, read the edge cell."""
    zero, half = np.float32(0), np.float32(0.5)
    if -half <= y < zero:
        y = zero
    elif h - 1 < y <= h - half:
        y = np.float32(h - 1)
    y0 = int(np.floor(y))
    return y0, y - np.float32(y0)


@njit(**JIT)
def _augment(src, M, exact, gain, contrast, saturation, boxes, size, scale, shift, out):
    # c is 1 or 3 (data/dataset.py): a pixel's channels are the locals v0, v1, v2. Written with
    # an array of c values, resized crops of 32 images at 224 pixels took 39 ms; 24 ms now
    # (with the axis-aligned rows and columns below; the same bits)
    n, h, w, c = src.shape
    v = np.empty(c, np.float32)
    x0s, fxs = np.empty(w, np.int64), np.empty(w, np.float64)   # float64 as fx per pixel: the same bits
    one, zero = np.float32(1), np.float32(0)
    for b in range(n):
        g, con, sat = gain[b], contrast[b], saturation[b]
        level = zero
        if con != one:                                   # the mean gray level of the source image
            total = 0.0
            for i in range(h):
                for j in range(w):
                    if c == 3:
                        total += 0.299 * src[b, i, j, 0] + 0.587 * src[b, i, j, 1] + 0.114 * src[b, i, j, 2]
                    else:
                        total += src[b, i, j, 0]
            level = np.float32(total / (h * w)) * g
        m00, m01, m02 = M[b, 0, 0], M[b, 0, 1], M[b, 0, 2]
        m10, m11, m12 = M[b, 1, 0], M[b, 1, 1], M[b, 1, 2]
        # an axis-aligned map (flips, crops, resized crops, scaling, shifts): y depends on i
        # alone and x on j alone, so each row's and column's cell is found once, not per pixel
        axis = m01 == zero and m10 == zero and not exact[b]
        if axis:
            for j in range(w):
                x0s[j], fxs[j] = _cell(m10 * 0 + m11 * j + m12, w)
        for i in range(h):
            if axis:
                y0, fy = _cell(m00 * i + m01 * 0 + m02, h)
            for j in range(w):
                s = zero
                v0 = v1 = v2 = zero                         # the pixel's channels (c = 1: v0 alone)
                if exact[b]:
                    yi, xi = int(m00 * i + m01 * j + m02), int(m10 * i + m11 * j + m12)
                    if 0 <= yi < h and 0 <= xi < w:
                        s = one
                        v0 = np.float32(src[b, yi, xi, 0])
                        if c == 3:
                            v1, v2 = np.float32(src[b, yi, xi, 1]), np.float32(src[b, yi, xi, 2])
                else:
                    if axis:
                        x0, fx = x0s[j], fxs[j]
                    else:
                        y0, fy = _cell(m00 * i + m01 * j + m02, h)
                        x0, fx = _cell(m10 * i + m11 * j + m12, w)
                    if 0 <= y0 and y0 + 1 < h and 0 <= x0 and x0 + 1 < w:
                        # all four taps inside: _taps unrolled, the same sums in the same order
                        a00, a01 = (one - fy) * (one - fx), (one - fy) * fx
                        a10, a11 = fy * (one - fx), fy * fx
                        s = a00 + a01 + a10 + a11
                        v0 = _bilinear(src, b, y0, x0, 0, a00, a01, a10, a11)
                        if c == 3:
                            v1 = _bilinear(src, b, y0, x0, 1, a00, a01, a10, a11)
                            v2 = _bilinear(src, b, y0, x0, 2, a00, a01, a10, a11)
                    else:
                        v[:] = zero
                        s = _taps(src, b, y0, x0, fy, fx, v)
                        v0 = v[0]
                        if c == 3:
                            v1, v2 = v[1], v[2]
                if s == zero:
                    for ch in range(c):
                        out[b, i, j, ch] = zero
                    continue
                v0, v1, v2 = v0 * g, v1 * g, v2 * g
                if con != one:
                    t = (one - con) * s * level
                    v0, v1, v2 = np.float32(con * v0 + t), np.float32(con * v1 + t), np.float32(con * v2 + t)
                if sat != one and c == 3:
                    gy = np.float32(0.299) * v0 + np.float32(0.587) * v1 + np.float32(0.114) * v2
                    v0, v1, v2 = sat * v0 + (one - sat) * gy, sat * v1 + (one - sat) * gy, sat * v2 + (one - sat) * gy
                out[b, i, j, 0] = v0 * scale[0] + s * shift[0]
                if c == 3:
                    out[b, i, j, 1] = v1 * scale[1] + s * shift[1]
                    out[b, i, j, 2] = v2 * scale[2] + s * shift[2]
        for k in range(boxes.shape[1]):
            top, left = boxes[b, k, 0], boxes[b, k, 1]
            for i in range(max(top, 0), min(top + size, h)):
                for j in range(max(left, 0), min(left + size, w)):
                    for ch in range(c):
                        out[b, i, j, ch] = zero


@njit(**JIT)
def _normalise(src, gain, scale, shift, out):
    """_augment's identity map with gain alone: the same float32 operations in the same order
    (v = src gain; out = v scale + 1 shift), one image's cells in one loop."""
    n, m, c = src.shape
    for b in range(n):
        g = gain[b]
        for ch in range(c):
            a, d = scale[ch], shift[ch]
            for k in range(m):
                out[b, k, ch] = np.float32(src[b, k, ch]) * g * a + d


@njit(**JIT)
def _taps(src, b, y0, x0, fy, fx, v):
    """Bilinear taps at an image's edge: the cells of the 2 x 2 around (y0 + fy, x0 + fx) that lie
    inside add a * src to v; -> the sum of their weights a."""
    h, w, c = src.shape[1], src.shape[2], src.shape[3]
    one = np.float32(1)
    s = np.float32(0)     # unified with the float64 weights a below: float64, as the caller's s
    for dy in range(2):
        yy = y0 + dy
        if yy < 0 or yy >= h:
            continue
        ay = fy if dy else one - fy
        for dx in range(2):
            xx = x0 + dx
            if xx < 0 or xx >= w:
                continue
            a = ay * (fx if dx else one - fx)
            s += a
            for ch in range(c):
                v[ch] += a * np.float32(src[b, yy, xx, ch])
    return s


@njit(**JIT)
def _mix(a, partner, lam, box, out):
    n, h, w, c = a.shape
    one = np.float32(1)
    for b in range(n):
        p = partner[b]
        if box[b, 0] < 0:
            l1 = lam[b]
            l2 = one - l1
            for i in range(h):
                for j in range(w):
                    for ch in range(c):
                        out[b, i, j, ch] = l1 * a[b, i, j, ch] + l2 * a[p, i, j, ch]
        else:
            y0, y1, x0, x1 = box[b, 0], box[b, 1], box[b, 2], box[b, 3]
            for i in range(h):
                for j in range(w):
                    q = p if y0 <= i < y1 and x0 <= j < x1 else b
                    for ch in range(c):
                        out[b, i, j, ch] = a[q, i, j, ch]


def _norm(mean, std):
    scale = (1.0 / (255.0 * np.asarray(std, np.float64))).astype(np.float32)
    shift = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    return scale, shift


def augment_batch(src, mean, std, matrix=None, gain=None, contrast=None, saturation=None, boxes=None, size=0):
    """src (B, h, w, c) uint8 -> (B, h, w, c) float32, augmented and normalised (the rule above).
    matrix (B, 2, 3): output (i, j) -> source (y, x), identity when None; gain, contrast, saturation
    (B,) factors, 1 when None; boxes (B, count, 2) int cutout corners of side `size`, or None."""
    n = src.shape[0]
    src = np.ascontiguousarray(src)
    scale, shift = _norm(mean, std)
    if matrix is None and contrast is None and saturation is None and (boxes is None or size == 0):
        out = np.empty(src.shape, np.float32)     # no geometry: the same sums, a loop that vectorises
        flat = (n, src.shape[1] * src.shape[2], src.shape[3])
        _normalise(src.reshape(flat), np.ones(n, np.float32) if gain is None else np.asarray(gain, np.float32),
                   scale, shift, out.reshape(flat))
        return out
    if matrix is None:
        matrix = np.zeros((n, 2, 3))
        matrix[:, 0, 0] = matrix[:, 1, 1] = 1.0
    matrix = np.asarray(matrix, np.float64)
    exact = np.all(matrix == np.round(matrix), axis=(1, 2))   # integer maps read one cell, exactly
    ones = np.ones(n, np.float32)
    factor = lambda f: ones if f is None else np.asarray(f, np.float32)   # noqa: E731
    boxes = np.zeros((n, 0, 2), np.int64) if boxes is None else np.asarray(boxes, np.int64)
    if src.shape[3] not in (1, 3):     # _augment's pixel holds 1 or 3 channels (data/dataset.py checks)
        raise ValueError(f"augmentation takes images of 1 or 3 channels, not {src.shape[3]}")
    out = np.empty(src.shape, np.float32)
    _augment(src, matrix.astype(np.float32), exact, factor(gain), factor(contrast), factor(saturation),
             boxes, int(size), scale, shift, out)
    return out


def mix_batch(x, partner, lam, box):
    """x (B, h, w, c) float32 -> a new mixed batch (the rule above). partner (B,) indices into the
    batch; lam (B,) shares of the own image (mixup); box (B, 4) cutmix boxes, row -1s for mixup."""
    out = np.empty_like(x)
    _mix(np.ascontiguousarray(x), np.asarray(partner, np.int64), np.asarray(lam, np.float32),
         np.asarray(box, np.int64), out)
    return out


def prepare_batch(src, mean, std, flip=None, dy=None, dx=None, gain=None):
    """src (B, h, w, c) uint8 -> (B, h, w, c) float32; per image: a horizontal flip, then a shift
    out[i, j] = src[i + dy, j' + dx] (j' = w - 1 - j when flipped; cells from outside are the mean),
    and a brightness gain. With none of them: plain normalisation, (pixel / 255 - mean) / std."""
    n, _, w, _ = src.shape
    if flip is None and dy is None and dx is None:
        return augment_batch(src, mean, std, gain=gain)
    m = np.zeros((n, 2, 3))
    m[:, 0, 0] = 1.0
    m[:, 0, 2] = 0 if dy is None else dy
    sign = np.where(np.zeros(n, bool) if flip is None else flip, -1.0, 1.0)
    m[:, 1, 1] = sign
    m[:, 1, 2] = np.where(sign < 0, w - 1, 0) + (0 if dx is None else dx)
    return augment_batch(src, mean, std, m, gain)
