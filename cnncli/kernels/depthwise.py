"""Depthwise convolution (groups == channels), NHWC, by direct loops with the channels innermost.

F = C*m filters (m: the depth multiplier); filter f reads input channel f // m only:
  y[n,i,j,f]  = sum_{kh,kw} x[n, i*sh-pt+kh, j*sw-pl+kw, f//m] w[kh,kw,f]
  dw[kh,kw,f] = sum_{n,i,j} dz[n,i,j,f] x[n, i*sh-pt+kh, j*sw-pl+kw, f//m]
  dx[n,ih,iw,c] = sum over the windows that cover (ih, iw) and f in [c*m, c*m + m) of dz w
im2col would build FH*FW*C columns per position, of which each filter reads only FH*FW (a GEMM
over a block-diagonal weight matrix); these loops read each input cell once per window, with the
F filters of a position in one contiguous, vectorised run. For m > 1 each image is first copied
with every channel repeated m times, so that filter f's input sits at index f as for m == 1.
Weights are (FH, FW, F): the layer's (FH, FW, C/g = 1, F) without its unit axis.
Padding is implicit: window cells outside the input are skipped.
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import activate, activation_grad
from .parallel import added_in_order, column_sums, run_chunks


@njit(**JIT)
def _depthwise_fwd(x, w, sh, sw, pt, pl, y):
    n_img, h, wd, c = x.shape
    fh, fw, f = w.shape
    _, oh, ow, _ = y.shape
    m = f // c
    xm = np.empty((h, wd, f), x.dtype)   # an image with its channels repeated m times, for m > 1
    acc = np.empty(f, y.dtype)           # one position's F sums, kept in a local row
    for n in range(n_img):
        xn = x[n]
        if m > 1:   # xm[a, b, ci*m + r] = x[n, a, b, ci], r < m: each channel beside its m filters
            for a in range(h):
                for b in range(wd):
                    for ci in range(c):
                        for r in range(m):
                            xm[a, b, ci * m + r] = x[n, a, b, ci]
            xn = xm
        for i in range(oh):
            for j in range(ow):
                acc[:] = 0
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        if iw < 0 or iw >= wd:
                            continue
                        xr, wr = xn[ih, iw], w[kh, kw]
                        for k in range(f):
                            acc[k] += xr[k] * wr[k]
                yr = y[n, i, j]
                for k in range(f):
                    yr[k] = acc[k]


@njit(**JIT)
def _depthwise_dx(dz, w, sh, sw, pt, pl, dx):
    n_img, h, wd, c = dx.shape
    fh, fw, f = w.shape
    _, oh, ow, _ = dz.shape
    m = f // c
    dxm = np.empty((h, wd, f), dx.dtype)   # per filter, for m > 1; then summed over each channel's m
    for n in range(n_img):
        acc = dx[n] if m == 1 else dxm
        acc[:] = 0
        for i in range(oh):
            for j in range(ow):
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        if iw < 0 or iw >= wd:
                            continue
                        ar, dr, wr = acc[ih, iw], dz[n, i, j], w[kh, kw]
                        for k in range(f):
                            ar[k] += dr[k] * wr[k]
        if m > 1:
            for a in range(h):
                for b in range(wd):
                    for ci in range(c):
                        s = dxm[a, b, ci * m]
                        for r in range(1, m):
                            s += dxm[a, b, ci * m + r]
                        dx[n, a, b, ci] = s


@njit(**JIT)
def _depthwise_dw(dz, x, sh, sw, pt, pl, dw):
    # dw += this run of images' weight gradient, summed image by image (a short sum per image,
    # then one add per image into dw: closer to the exact sum than one long float32 running sum)
    n_img, h, wd, c = x.shape
    fh, fw, f = dw.shape
    _, oh, ow, _ = dz.shape
    m = f // c
    part = np.empty_like(dw)
    xm = np.empty((h, wd, f), x.dtype)
    for n in range(n_img):
        xn = x[n]
        if m > 1:   # xm[a, b, ci*m + r] = x[n, a, b, ci], r < m: each channel beside its m filters
            for a in range(h):
                for b in range(wd):
                    for ci in range(c):
                        for r in range(m):
                            xm[a, b, ci * m + r] = x[n, a, b, ci]
            xn = xm
        part[:] = 0
        for i in range(oh):
            for j in range(ow):
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    for kw in range(fw):
                        iw = j * sw - pl + kw
                        if iw < 0 or iw >= wd:
                            continue
                        pr, dr, xr = part[kh, kw], dz[n, i, j], xn[ih, iw]
                        for k in range(f):
                            pr[k] += dr[k] * xr[k]
        dw += part


def _check(x, w):
    """-> (x C-contiguous, w as (FH, FW, F)) for x (N, H, W, C) and w (FH, FW, 1, F), F = C*m."""
    fh, fw, one, f = w.shape
    assert one == 1 and f % x.shape[3] == 0, (x.shape, w.shape)
    assert x.dtype == w.dtype
    return np.ascontiguousarray(x), np.ascontiguousarray(w).reshape(fh, fw, f)


def depthwise_forward(x, w, bias, act, stride, pads, out_hw, alpha=0.01):
    """y = act(depthwise(x, w) + bias), formula above.

    x: (N, H, W, C); w: (FH, FW, 1, F), F = C*m; bias: (F,) or None -> y (N, OH, OW, F).
    Images are split over threads; each thread fills and activates its own images' outputs.
    """
    x, w3 = _check(x, w)
    y = np.empty((x.shape[0],) + tuple(out_hw) + (w3.shape[2],), x.dtype)

    def part(lo, hi):
        _depthwise_fwd(x[lo:hi], w3, stride[0], stride[1], pads[0], pads[2], y[lo:hi])
        activate(y[lo:hi], act, alpha, bias)

    run_chunks(x.shape[0], part)
    return y


def depthwise_backward(dy, x, y, w, act, stride, pads, need_dx=True, alpha=0.01):
    """-> (dx or None, dw like w, db (F,)) for depthwise_forward, given its input x and output y.

    dz = dy * act'(y);  dw, dx as above;  db = sum dz. Each thread takes a run of images; the
    threads' dw and db are added in chunk order, so results do not depend on timing.
    """
    x, w3 = _check(x, w)
    dy = np.ascontiguousarray(dy)
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    f = w3.shape[2]

    def part(lo, hi):
        dz = activation_grad(dy[lo:hi], y[lo:hi], act, alpha)
        dw = np.zeros(w3.shape, x.dtype)
        _depthwise_dw(dz, x[lo:hi], stride[0], stride[1], pads[0], pads[2], dw)
        if need_dx:
            _depthwise_dx(dz, w3, stride[0], stride[1], pads[0], pads[2], dx[lo:hi])
        return dw, column_sums(dz.reshape(-1, f))

    dw, db = added_in_order(run_chunks(x.shape[0], part))
    return dx, dw.reshape(w.shape), db
