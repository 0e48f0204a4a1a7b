"""Convolution as cross-correlation (no kernel flip), NHWC, via im2col / col2im.

Forward:  cols = im2col(x)            (N*OH*OW, FH*FW*C), column order (kh, kw, c)
          y    = cols @ W             W: (FH*FW*C, F)      -> (N, OH, OW, F)
Backward: dW   = cols.T @ dy,  dcols = dy @ W.T,  dx = col2im(dcols)
Padding is implicit: cells outside the input read as zero, so no padded copy is made.
"""

import numpy as np
from numba import njit, prange

from . import JIT, PJIT  # noqa: F401  (JIT kept for symmetry with other kernel modules)


@njit(**PJIT)
def _im2col(x, fh, fw, sh, sw, pt, pl, oh, ow, cols):
    n_img, h, w, c = x.shape
    zero = x.dtype.type(0)
    for n in prange(n_img):
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        base = (kh * fw + kw) * c
                        if 0 <= ih < h and 0 <= iw < w:
                            for ci in range(c):
                                cols[row, base + ci] = x[n, ih, iw, ci]
                        else:
                            for ci in range(c):
                                cols[row, base + ci] = zero


@njit(**PJIT)
def _col2im(dcols, fh, fw, sh, sw, pt, pl, oh, ow, dx):
    n_img, h, w, c = dx.shape
    for n in prange(n_img):
        dx[n] = 0
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        if iw < 0 or iw >= w:
                            continue
                        base = (kh * fw + kw) * c
                        for ci in range(c):
                            dx[n, ih, iw, ci] += dcols[row, base + ci]


def _is_identity(fh, fw, sh, sw, pads):
    return fh == 1 and fw == 1 and sh == 1 and sw == 1 and not any(pads)


def im2col(x, fh, fw, stride, pads, out_hw):
    """(N, H, W, C) -> (N*OH*OW, FH*FW*C). pads = (top, bottom, left, right)."""
    assert x.ndim == 4 and x.flags.c_contiguous, "im2col wants a C-contiguous NHWC array"
    sh, sw = stride
    oh, ow = out_hw
    n, _, _, c = x.shape
    if _is_identity(fh, fw, sh, sw, pads):  # 1x1 stride-1 conv: the input already is the matrix
        return x.reshape(n * oh * ow, c)
    cols = np.empty((n * oh * ow, fh * fw * c), dtype=x.dtype)
    _im2col(x, fh, fw, sh, sw, pads[0], pads[2], oh, ow, cols)
    return cols


def col2im(dcols, x_shape, fh, fw, stride, pads, out_hw):
    """(N*OH*OW, FH*FW*C) -> (N, H, W, C), summing the overlaps."""
    sh, sw = stride
    oh, ow = out_hw
    if _is_identity(fh, fw, sh, sw, pads):
        return dcols.reshape(x_shape)
    dcols = np.ascontiguousarray(dcols)
    dx = np.empty(x_shape, dtype=dcols.dtype)
    _col2im(dcols, fh, fw, sh, sw, pads[0], pads[2], oh, ow, dx)
    return dx


def conv2d_forward(x, w, stride, pads, out_hw):
    """y[n,i,j,f] = sum_{kh,kw,c} x[n, i*sh-pt+kh, j*sw-pl+kw, c] * w[kh,kw,c,f]  (bias added by the caller).

    x: (N, H, W, C); w: (FH, FW, C, F). Returns (y (N, OH, OW, F), cols).
    """
    fh, fw, c, f = w.shape
    cols = im2col(x, fh, fw, stride, pads, out_hw)
    y = cols @ w.reshape(fh * fw * c, f)
    return y.reshape(x.shape[0], out_hw[0], out_hw[1], f), cols


def conv2d_backward(dy, cols, x_shape, w, stride, pads, out_hw, need_dx=True):
    """Returns (dx, dw, db) for conv2d_forward; dx is None when need_dx is False."""
    fh, fw, c, f = w.shape
    dy2 = dy.reshape(-1, f)
    dw = (cols.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    dx = None
    if need_dx:
        dcols = dy2 @ w.reshape(fh * fw * c, f).T
        dx = col2im(dcols, x_shape, fh, fw, stride, pads, out_hw)
    return dx, dw, db
