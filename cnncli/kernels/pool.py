"""Max and average pooling over NHWC windows, and their global forms.

Padded cells never win a max and are not counted in an average (TensorFlow's rule for
'same' average pooling: the mean is over the real cells under the window).
"""

import numpy as np
from numba import njit

from . import JIT
from .parallel import MIN_VALUES_PER_THREAD, run_chunks


@njit(**JIT)
def _maxpool_fwd(x, fh, fw, sh, sw, pt, pl, y, arg):
    # channels innermost: each window cell updates a contiguous run of C values (SIMD-friendly)
    n_img, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for n in range(n_img):
        for i in range(oh):
            for j in range(ow):
                first = True
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        if iw < 0 or iw >= w:
                            continue
                        where = ih * w + iw
                        if first:
                            for ci in range(c):
                                y[n, i, j, ci] = x[n, ih, iw, ci]
                                arg[n, i, j, ci] = where
                            first = False
                        else:
                            for ci in range(c):
                                v = x[n, ih, iw, ci]
                                if v > y[n, i, j, ci]:
                                    y[n, i, j, ci] = v
                                    arg[n, i, j, ci] = where
                if first:  # a window of padding only (not reachable with validated shapes)
                    for ci in range(c):
                        y[n, i, j, ci] = 0
                        arg[n, i, j, ci] = -1


@njit(**JIT)
def _maxpool2x2_fwd(x, y, arg):
    # The common case (2x2 window, stride 2, no padding) unrolled: 7x faster than the general
    # kernel on LeNet-5's 28x28x6 maps, 2x on VGG's 32x32x32 (one thread, batch 64).
    n_img, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for n in range(n_img):
        for i in range(oh):
            r = 2 * i
            for j in range(ow):
                q = 2 * j
                for ci in range(c):
                    best = x[n, r, q, ci]
                    where = r * w + q
                    v = x[n, r, q + 1, ci]
                    if v > best:
                        best, where = v, r * w + q + 1
                    v = x[n, r + 1, q, ci]
                    if v > best:
                        best, where = v, (r + 1) * w + q
                    v = x[n, r + 1, q + 1, ci]
                    if v > best:
                        best, where = v, (r + 1) * w + q + 1
                    y[n, i, j, ci] = best
                    arg[n, i, j, ci] = where


@njit(**JIT)
def _maxpool_bwd(dy, arg, dx):
    n_img, h, w, c = dx.shape
    _, oh, ow, _ = dy.shape
    for n in range(n_img):
        dx[n] = 0
        for i in range(oh):
            for j in range(ow):
                for ci in range(c):
                    where = arg[n, i, j, ci]
                    if where >= 0:
                        dx[n, where // w, where % w, ci] += dy[n, i, j, ci]


@njit(**JIT)
def _avgpool_fwd(x, fh, fw, sh, sw, pt, pl, y):
    n_img, h, w, c = x.shape
    _, oh, ow, _ = y.shape
    for n in range(n_img):
        for i in range(oh):
            h0 = max(i * sh - pt, 0)
            h1 = min(i * sh - pt + fh, h)
            for j in range(ow):
                w0 = max(j * sw - pl, 0)
                w1 = min(j * sw - pl + fw, w)
                count = (h1 - h0) * (w1 - w0)
                for ci in range(c):
                    y[n, i, j, ci] = 0
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        for ci in range(c):
                            y[n, i, j, ci] += x[n, ih, iw, ci]
                if count > 0:
                    inv = y.dtype.type(1.0 / count)
                    for ci in range(c):
                        y[n, i, j, ci] *= inv


@njit(**JIT)
def _avgpool_bwd(dy, fh, fw, sh, sw, pt, pl, dx):
    n_img, h, w, c = dx.shape
    _, oh, ow, _ = dy.shape
    for n in range(n_img):
        dx[n] = 0
        for i in range(oh):
            h0 = max(i * sh - pt, 0)
            h1 = min(i * sh - pt + fh, h)
            for j in range(ow):
                w0 = max(j * sw - pl, 0)
                w1 = min(j * sw - pl + fw, w)
                count = (h1 - h0) * (w1 - w0)
                if count == 0:
                    continue
                inv = dx.dtype.type(1.0 / count)
                for ih in range(h0, h1):
                    for iw in range(w0, w1):
                        for ci in range(c):
                            dx[n, ih, iw, ci] += dy[n, i, j, ci] * inv


@njit(**JIT)
def _global_max_fwd(x, y, arg):
    n_img, h, w, c = x.shape
    for n in range(n_img):
        for ci in range(c):
            y[n, ci] = x[n, 0, 0, ci]
            arg[n, ci] = 0
        for ih in range(h):
            for iw in range(w):
                for ci in range(c):
                    v = x[n, ih, iw, ci]
                    if v > y[n, ci]:
                        y[n, ci] = v
                        arg[n, ci] = ih * w + iw


@njit(**JIT)
def _global_max_bwd(dy, arg, dx):
    n_img, h, w, c = dx.shape
    for n in range(n_img):
        dx[n] = 0
        for ci in range(c):
            where = arg[n, ci]
            dx[n, where // w, where % w, ci] = dy[n, ci]


def _check(x):
    assert x.ndim == 4 and x.flags.c_contiguous, "pooling wants a C-contiguous NHWC array"


def _split(n, fn, values_per_image):
    """fn(lo, hi) over the images, split over threads when there is enough work."""
    run_chunks(n, fn, max(1, MIN_VALUES_PER_THREAD // max(values_per_image, 1)))


def maxpool_forward(x, size, stride, pads, out_hw):
    """y[n,i,j,c] = max over the window of x; returns (y, argmax as flat ih*W+iw, -1 if empty)."""
    _check(x)
    y = np.empty((x.shape[0], out_hw[0], out_hw[1], x.shape[3]), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    if tuple(size) == (2, 2) and tuple(stride) == (2, 2) and not any(pads):
        _split(x.shape[0], lambda lo, hi: _maxpool2x2_fwd(x[lo:hi], y[lo:hi], arg[lo:hi]), x[0].size)
    else:
        _split(x.shape[0], lambda lo, hi: _maxpool_fwd(x[lo:hi], size[0], size[1], stride[0], stride[1],
                                                       pads[0], pads[2], y[lo:hi], arg[lo:hi]), x[0].size)
    return y, arg


def maxpool_backward(dy, arg, x_shape):
    dx = np.empty(x_shape, dtype=dy.dtype)
    dy = np.ascontiguousarray(dy)
    _split(dy.shape[0], lambda lo, hi: _maxpool_bwd(dy[lo:hi], arg[lo:hi], dx[lo:hi]), dx[0].size)
    return dx


def avgpool_forward(x, size, stride, pads, out_hw):
    """y[n,i,j,c] = mean of x over the real (unpadded) cells of the window."""
    _check(x)
    y = np.empty((x.shape[0], out_hw[0], out_hw[1], x.shape[3]), dtype=x.dtype)
    _split(x.shape[0], lambda lo, hi: _avgpool_fwd(x[lo:hi], size[0], size[1], stride[0], stride[1],
                                                   pads[0], pads[2], y[lo:hi]), x[0].size)
    return y


def avgpool_backward(dy, x_shape, size, stride, pads):
    dx = np.empty(x_shape, dtype=dy.dtype)
    dy = np.ascontiguousarray(dy)
    _split(dy.shape[0], lambda lo, hi: _avgpool_bwd(dy[lo:hi], size[0], size[1], stride[0], stride[1],
                                                    pads[0], pads[2], dx[lo:hi]), dx[0].size)
    return dx


def global_maxpool_forward(x):
    """(N, H, W, C) -> (N, C): the max over all positions; also returns the argmax."""
    _check(x)
    y = np.empty((x.shape[0], x.shape[3]), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    _global_max_fwd(x, y, arg)
    return y, arg


def global_maxpool_backward(dy, arg, x_shape):
    dx = np.empty(x_shape, dtype=dy.dtype)
    _global_max_bwd(np.ascontiguousarray(dy), arg, dx)
    return dx


def global_avgpool_forward(x):
    """(N, H, W, C) -> (N, C): the mean over all positions."""
    _check(x)
    return x.mean(axis=(1, 2), dtype=x.dtype)


def global_avgpool_backward(dy, x_shape):
    n, h, w, c = x_shape
    scale = dy.dtype.type(1.0 / (h * w))
    return np.ascontiguousarray(np.broadcast_to((dy * scale)[:, None, None, :], x_shape))
