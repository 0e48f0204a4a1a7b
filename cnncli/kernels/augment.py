"""uint8 images -> normalised float32 batch, with flip, shifted crop and brightness in one pass.

out[b, i, j, ch] = src[b, i + dy[b], j' + dx[b], ch] * gain[b] * scale[ch] + shift[ch]
  j' = w - 1 - j when flip[b], else j;  cells shifted in from outside the image are 0 (the mean)
scale = 1 / (255 std), shift = -mean / std, so 0 in the output is the training-set mean.
"""

import numpy as np
from numba import njit

from . import JIT


@njit(**JIT)
def _prepare(src, scale, shift, flip, dy, dx, gain, out):
    n, h, w, c = src.shape
    for b in range(n):
        for i in range(h):
            si = i + dy[b]
            for j in range(w):
                jj = w - 1 - j if flip[b] else j
                sj = jj + dx[b]
                if 0 <= si < h and 0 <= sj < w:
                    for ch in range(c):
                        out[b, i, j, ch] = np.float32(src[b, si, sj, ch]) * gain[b] * scale[ch] + shift[ch]
                else:
                    for ch in range(c):
                        out[b, i, j, ch] = 0


def prepare_batch(src, mean, std, flip=None, dy=None, dx=None, gain=None):
    """src (B, h, w, c) uint8 -> (B, h, w, c) float32; augmentation arrays are per image."""
    n = src.shape[0]
    src = np.ascontiguousarray(src)
    scale = (1.0 / (255.0 * np.asarray(std, np.float64))).astype(np.float32)
    shift = (-np.asarray(mean, np.float64) / np.asarray(std, np.float64)).astype(np.float32)
    flip = np.zeros(n, np.bool_) if flip is None else flip
    dy = np.zeros(n, np.int64) if dy is None else dy
    dx = np.zeros(n, np.int64) if dx is None else dx
    gain = np.ones(n, np.float32) if gain is None else gain.astype(np.float32)
    out = np.empty(src.shape, np.float32)
    _prepare(src, scale, shift, flip, dy, dx, gain, out)
    return out
