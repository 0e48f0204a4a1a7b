"""Depthwise convolution (groups == channels), NHWC, by direct loops with the channels innermost.

F = C*m filters (m: the depth multiplier); filter f reads input channel f // m only:
  y[n,i,j,f]  = sum_{kh,kw} x[n, i*sh-pt+kh, j*sw-pl+kw, f//m] w[kh,kw,f]
  dw[kh,kw,f] = sum_{n,i,j} dz[n,i,j,f] x[n, i*sh-pt+kh, j*sw-pl+kw, f//m]
  dx[n,ih,iw,c] = sum over the windows that cover (ih, iw) and f in [c*m, c*m + m) of dz w
im2col would build FH*FW*C columns per position, of which each filter reads only FH*FW (a GEMM
over a block-diagonal weight matrix); these loops read each input cell once per window, with the
F filters of a position in one contiguous, vectorised run. Forward, a 3x3 or 5x5 window that lies
inside the image sums each channel's products in a register (the same sums in the same order as
the border positions' loop, which adds them into a row in memory), and each output row gets its
bias and activation while it is in the cache. For m > 1 each image is first copied with every
channel repeated m times, so that filter f's input sits at index f as for m == 1.
Weights are (FH, FW, F): the layer's (FH, FW, C/g = 1, F) without its unit axis.
Padding is implicit: window cells outside the input are skipped.
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import CODES, LINEAR, SOFTMAX, _bias_act, activate, activation_grad
from .parallel import added_in_order, column_sums, run_chunks


@njit(inline="always")
def _repeated(x, n, m, xm):
    # image n with each channel repeated m times (xm[a, b, ci*m + r] = x[n, a, b, ci], r < m), so
    # that filter f's input sits at index f; x[n] itself for m == 1
    if m == 1:
        return x[n]
    _, h, wd, c = x.shape
    for a in range(h):
        for b in range(wd):
            for ci in range(c):
                for r in range(m):
                    xm[a, b, ci * m + r] = x[n, a, b, ci]
    return xm


@njit(inline="always")
def _inner_columns(wd, fw, pl, sw, ow):
    # -> (jl, jr): the output columns jl <= j < jr whose window lies inside the input's columns
    jl = min((pl + sw - 1) // sw, ow)
    return jl, max(min((wd - fw + pl) // sw + 1, ow), jl)


@njit(inline="always")
def _window(xn, w, sh, sw, pt, pl, i, j, acc):
    # acc = position (i, j)'s F sums over the window cells inside the image, in (kh, kw) order
    h, wd, _ = xn.shape
    fh, fw, f = w.shape
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


@njit(inline="always")
def _three(s, xn, r, c, w, kh, k):
    # s + the products of window row kh, 3 wide, at input row r, columns c.., channel k
    s += xn[r, c, k] * w[kh, 0, k]
    s += xn[r, c + 1, k] * w[kh, 1, k]
    return s + xn[r, c + 2, k] * w[kh, 2, k]


@njit(inline="always")
def _five(s, xn, r, c, w, kh, k):
    # the same for a window row 5 wide
    s = _three(s, xn, r, c, w, kh, k)
    s += xn[r, c + 3, k] * w[kh, 3, k]
    return s + xn[r, c + 4, k] * w[kh, 4, k]


@njit(inline="always")
def _sums3(xn, ih, c, w, k):
    # position's sum for channel k, its 3x3 window's top left at (ih, c), taps in _window's order
    # (from 0: the same bits)
    s = _three(xn.dtype.type(0), xn, ih, c, w, 0, k)
    s = _three(s, xn, ih + 1, c, w, 1, k)
    return _three(s, xn, ih + 2, c, w, 2, k)


@njit(inline="always")
def _sums5(xn, ih, c, w, k):
    # the same for a 5x5 window
    s = _five(xn.dtype.type(0), xn, ih, c, w, 0, k)
    s = _five(s, xn, ih + 1, c, w, 1, k)
    s = _five(s, xn, ih + 2, c, w, 2, k)
    s = _five(s, xn, ih + 3, c, w, 3, k)
    return _five(s, xn, ih + 4, c, w, 4, k)


@njit(inline="always")
def _inner_row(sums, xn, ih, w, sw, pl, jl, jr, yr):
    # yr[j] for jl <= j < jr, positions whose window lies inside the image, from input row ih on:
    # a channel's products summed in a register by sums (_sums3, _sums5), where _window reads and
    # writes its sums in memory once a tap. (Tried: two positions a pass, to load each filter
    # value once for both, and each window row's sum apart, for shorter chains of adds: no faster)
    f = w.shape[2]
    for j in range(jl, jr):
        c, out = j * sw - pl, yr[j]
        for k in range(f):
            out[k] = sums(xn, ih, c, w, k)


@njit(**JIT)
def _depthwise_fwd(x, w, b, act, alpha, sh, sw, pt, pl, y):
    # y = act(depthwise(x, w) + b), each output row activated while it is in the cache (act < 0:
    # not at all). 3x3 and 5x5 windows inside the image take _inner_row, the others _window.
    n_img, h, wd, c = x.shape
    fh, fw, f = w.shape
    _, oh, ow, _ = y.shape
    m = f // c
    xm = np.empty((h, wd, f), x.dtype)   # an image with its channels repeated m times, for m > 1
    fast = fh == fw and (fh == 3 or fh == 5)
    jl, jr = _inner_columns(wd, fw, pl, sw, ow)
    for n in range(n_img):
        xn = _repeated(x, n, m, xm)
        for i in range(oh):
            ih = i * sh - pt
            inside = fast and ih >= 0 and ih + fh <= h
            lo, hi = (jl, jr) if inside else (ow, ow)
            for j in range(lo):
                _window(xn, w, sh, sw, pt, pl, i, j, y[n, i, j])
            if hi > lo and fh == 3:
                _inner_row(_sums3, xn, ih, w, sw, pl, lo, hi, y[n, i])
            elif hi > lo:
                _inner_row(_sums5, xn, ih, w, sw, pl, lo, hi, y[n, i])
            for j in range(hi, ow):
                _window(xn, w, sh, sw, pt, pl, i, j, y[n, i, j])
            if act >= 0:
                _bias_act(y[n, i], b, act, alpha)


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
    part = np.empty_like(dw)
    xm = np.empty((h, wd, f), x.dtype)
    for n in range(n_img):
        xn = _repeated(x, n, f // c, xm)
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
    run_chunks(x.shape[0], lambda lo, hi: _forward_into(x[lo:hi], w3, bias, act, alpha, stride, pads, y[lo:hi]))
    return y


def _forward_into(x, w3, bias, act, alpha, stride, pads, y, top=None):
    """y = act(depthwise(x, w3) + bias), pads[0] replaced by top where given (a band of rows).
    Linear without a bias (a layer before batchnorm, dx by turned filters) has no row pass."""
    code = CODES[act]
    b = np.empty(0, x.dtype) if bias is None else bias
    rowwise = -1 if code == SOFTMAX or code == LINEAR and bias is None else code
    _depthwise_fwd(x, w3, b, rowwise, x.dtype.type(alpha), stride[0], stride[1],
                   pads[0] if top is None else top, pads[2], y)
    if code == SOFTMAX:   # across channels: after the sums, on whole rows of positions
        activate(y, act, alpha, bias)


BAND_BYTES = 512 << 10   # the expanded rows banded_depthwise_forward keeps at once: about half an L2


def banded_depthwise_forward(x, w, bias, act, stride, pads, out_hw, alpha=0.01, expand=None, project=None):
    """depthwise_forward with the 1x1 convolution before it (expand) and the one after it
    (project) computed on the same bands of rows, so that neither the expanded map nor the
    depthwise output is ever whole in memory. expand, project: a 1x1 layer's (filters (1, 1, C,
    F), bias (F,) or None, activation, alpha), or None; x is then the expansion's input.

    An inverted residual block's expanded map (MobileNetV2: 112x112x96, 4.8 MB an image) was
    written by the 1x1 GEMM and read back by the depthwise loop, both from memory, and the
    depthwise output again by the projection's GEMM. Here each image's rows go a band at a time,
    BAND_BYTES of expanded rows at most: expanded, their depthwise output rows summed and
    projected while they are in the cache. A band keeps the expanded rows the next band's windows
    share with it (moved to the top), so no row is expanded twice. The GEMMs run on a band's rows
    instead of runs of conv.ROWS_PER_STEP rows, and OpenBLAS groups its sums differently: with
    both 1x1 convs inside, MobileNetV2's and EfficientNet-Lite0's logits (batch 16, 224 pixels)
    moved by at most 2.6e-6 and 1.4e-6 of the largest (with the expansion alone, not at all).
    Bands of 128 KB were slower than the layers apart (Python per band); 512 KB and 1 MB were
    within noise of each other.
    """
    x = np.ascontiguousarray(x)
    n, h, wd, c = x.shape
    f = w.shape[3]
    assert w.shape[2] == 1 and x.dtype == w.dtype and (c == f if expand is None else expand[0].shape == (1, 1, c, f))
    w3, fh, sh, pt = np.ascontiguousarray(w).reshape(w.shape[0], w.shape[1], f), w.shape[0], stride[0], pads[0]
    w1 = None if expand is None else np.ascontiguousarray(expand[0]).reshape(c, f)
    w2 = None if project is None else np.ascontiguousarray(project[0]).reshape(f, -1)
    band = max(1, (BAND_BYTES // (wd * f * x.itemsize) - fh) // sh + 1)    # output rows a band
    y = np.empty((n,) + tuple(out_hw) + ((f,) if w2 is None else (w2.shape[1],)), x.dtype)

    def part(lo, hi):
        buf = np.empty((1, (band - 1) * sh + fh, wd, f), x.dtype) if expand else None
        out = np.empty((1, band, out_hw[1], f), x.dtype) if project else None
        for img in range(lo, hi):
            have = (0, 0)     # buf holds the expanded rows have[0] <= r < have[1]
            for i0 in range(0, out_hw[0], band):
                i1 = min(out_hw[0], i0 + band)
                r0 = max(0, i0 * sh - pt)    # the input rows the band's windows reach: none where
                r1 = max(r0, min(h, (i1 - 1) * sh - pt + fh))   # they all lie in a padding wider than them
                src = x[img:img + 1, r0:r1] if expand is None else _expanded(x[img], r0, r1, have, buf, w1, expand)
                dst = y[img:img + 1, i0:i1] if project is None else out[:, :i1 - i0]
                _forward_into(src, w3, bias, act, alpha, stride, pads, dst, top=pt + r0 - i0 * sh)
                if project is not None:
                    rows = y[img, i0:i1].reshape(-1, w2.shape[1])
                    np.matmul(dst.reshape(-1, f), w2, out=rows)
                    activate(rows, project[2], project[3], project[1])
                have = (r0, r1)

    run_chunks(n, part)
    return y


def _expanded(x, r0, r1, have, buf, w1, expand):
    """buf's first r1 - r0 rows = act(x[r0:r1] @ w1 + bias) (expand's), buf holding rows have[0]..have[1]
    of it before: the rows the two bands share are moved up, the others computed. -> that view."""
    f = w1.shape[1]
    start = max(r0, min(have[1], r1))
    if start > r0:
        buf[0, :start - r0] = buf[0, r0 - have[0]:start - have[0]].copy()
    rows = buf[0, start - r0:r1 - r0].reshape(-1, f)
    np.matmul(x[start:r1].reshape(-1, x.shape[2]), w1, out=rows)
    activate(rows, expand[2], expand[3], expand[1])
    return buf[:, :r1 - r0]


def depthwise_backward(dy, x, y, w, act, stride, pads, need_dx=True, alpha=0.01, need_db=True):
    """-> (dx or None, dw like w, db (F,) or None) for depthwise_forward, given its input x and output y.

    dz = dy * act'(y);  dw, dx as above;  db = sum dz (need_db=False: a layer without a bias,
    one read of dz less). Each thread takes a run of images; the threads' dw and db are added in
    chunk order, so results do not depend on timing. At stride 1 with one filter a channel (and
    top and left padding narrower than the filter), dx is the forward kernel's depthwise conv of
    dz with the filters turned 180 degrees (padding F - 1 - p): each dx cell's sum in a register,
    in the order the loop below adds them into memory (the same bits). MobileNetV2's and EfficientNet-Lite0's stride-1 shapes, 8 images,
    one thread, ms: 56x56x144 3.79 -> 3.64, 28x28x192 0.95 -> 0.62, 112x112x32 3.87 -> 3.09,
    28x28x240 5x5 4.00 -> 3.43.
    """
    x, w3 = _check(x, w)
    dy = np.ascontiguousarray(dy)
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    fh, fw, f = w3.shape
    # turned filters read padding fh - 1 - top, fw - 1 - left: not below 0 (a pad wider than the
    # filter, all-padding windows, keeps the loop)
    turns = tuple(stride) == (1, 1) and f == x.shape[3] and pads[0] < fh and pads[2] < fw
    turned = np.ascontiguousarray(w3[::-1, ::-1]) if turns else None
    turned_pads = (fh - 1 - pads[0], 0, fw - 1 - pads[2], 0)    # _forward_into reads top and left

    def part(lo, hi):
        dz = activation_grad(dy[lo:hi], y[lo:hi], act, alpha)
        dw = np.zeros(w3.shape, x.dtype)
        _depthwise_dw(dz, x[lo:hi], stride[0], stride[1], pads[0], pads[2], dw)
        if need_dx and turned is not None:
            _forward_into(dz, turned, None, "linear", alpha, (1, 1), turned_pads, dx[lo:hi])
        elif need_dx:
            _depthwise_dx(dz, w3, stride[0], stride[1], pads[0], pads[2], dx[lo:hi])
        return dw, column_sums(dz.reshape(-1, f)) if need_db else None

    dw, db = added_in_order(run_chunks(x.shape[0], part))
    return dx, dw.reshape(w.shape), db
