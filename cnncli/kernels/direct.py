"""Thin stride-1 convolutions without im2col columns (conv_algorithm.convolves_directly: 1-3
channels, at most conv_algorithm.DIRECT_MAX_FILTERS filters): the forward is a sum of shifted runs
of the zero-padded planes, dW a dot product of them with dz. conv.py's conv2d_forward and
conv2d_backward call them with the layer's _Geometry."""

import numpy as np
from numba import njit

from . import JIT
from .activation import CODES, LINEAR, RELU, SOFTMAX, _act, activate, constants
from .parallel import run_chunks


# The direct kernels take filters two by two: each loaded run of the input serves both (LeNet-5's
# first layer, 32 images: 56 us against 95 one filter at a time). An odd filter count comes with a
# zero filter added (_Geometry.f2). One loop shape per tap count: 5, 3 and any other up to 5 (each
# shape more costs compile time, and the kernels compile on a user's first run).

@njit(inline="always")
def _taps2(o, p, xs, off, wv, wu, k, m):
    # o[q] += sum_t wv[t] xs[off + t + q] and p[q] += sum_t wu[t] xs[off + t + q] for q < m and
    # t < k <= 5, one stored row per loop (LLVM vectorises it over q; the products of a q stay in
    # registers). Views, so that the loops index from 0 (an offset index in the loop kept it scalar).
    if k == 5:
        w0, w1, w2, w3, w4 = wv[0], wv[1], wv[2], wv[3], wv[4]
        u0, u1, u2, u3, u4 = wu[0], wu[1], wu[2], wu[3], wu[4]
        x0, x1, x2 = xs[off:off + m], xs[off + 1:off + 1 + m], xs[off + 2:off + 2 + m]
        x3, x4 = xs[off + 3:off + 3 + m], xs[off + 4:off + 4 + m]
        for q in range(m):
            a, b, c, d, e = x0[q], x1[q], x2[q], x3[q], x4[q]
            o[q] += w0 * a + w1 * b + w2 * c + w3 * d + w4 * e
            p[q] += u0 * a + u1 * b + u2 * c + u3 * d + u4 * e
    elif k == 3:
        w0, w1, w2 = wv[0], wv[1], wv[2]
        u0, u1, u2 = wu[0], wu[1], wu[2]
        x0, x1, x2 = xs[off:off + m], xs[off + 1:off + 1 + m], xs[off + 2:off + 2 + m]
        for q in range(m):
            a, b, c = x0[q], x1[q], x2[q]
            o[q] += w0 * a + w1 * b + w2 * c
            p[q] += u0 * a + u1 * b + u2 * c
    else:
        for t in range(k):
            w0, u0 = wv[t], wu[t]
            x0 = xs[off + t:off + t + m]
            for q in range(m):
                o[q] += w0 * x0[q]
                p[q] += u0 * x0[q]


@njit(**JIT)
def _direct_wide(xpad, wt, bias, act, alpha, wp, oh, ow, acc, y):
    # Stride-1 convolution of few channels without columns. xpad (N, C, Hp * Wp + FW): padded
    # planes, flat, as _im2col_wide_t reads them; wt (F2, C, FH, FW), F2 = F rounded up to even
    # (_Geometry.f2); acc (F2, rows * Wp) scratch.
    # Output q = i Wp + j of filter f is sum_{c, kh, kw} wt[f, c, kh, kw] xpad[n, c, kh Wp + kw + q]
    # (j >= OW: dropped). A block of output rows at a time, filters two by two, each filter's
    # block a sum of shifted runs of the planes; then bias and activation on each filter's block
    # (ReLU a loop of its own, so that it vectorises: in the copy below, a branch on the sign
    # took 3 ns a value), and the copy into y (N, OH, OW, F). bias: (F,) or empty.
    n_img, c, _ = xpad.shape
    f2, _, fh, fw = wt.shape
    f_n = y.shape[3]
    rows = acc.shape[1] // wp
    has_bias = bias.shape[0] == f_n
    k = constants(y)
    zero = k[0]
    for n in range(n_img):
        for i0 in range(0, oh, rows):
            r = min(rows, oh - i0)
            m, q0 = r * wp, i0 * wp
            acc[:, :m] = 0
            for f in range(0, f2, 2):
                o, p = acc[f, :m], acc[f + 1, :m]
                for ci in range(c):
                    xs = xpad[n, ci]
                    for kh in range(fh):
                        for k0 in range(0, fw, 5):
                            _taps2(o, p, xs, q0 + kh * wp + k0, wt[f, ci, kh, k0:], wt[f + 1, ci, kh, k0:],
                                   min(5, fw - k0), m)
            for f in range(f_n):
                o = acc[f, :m]
                bf = bias[f] if has_bias else zero
                if act == RELU:
                    for q in range(m):
                        v = o[q] + bf
                        o[q] = zero if v < zero else v
                else:
                    for q in range(m):
                        o[q] = _act(o[q] + bf, act, alpha, k)
            for i in range(r):
                yr = y[n, i0 + i]
                for f in range(f_n):
                    o = acc[f, i * wp:i * wp + ow]
                    for j in range(ow):
                        yr[j, f] = o[j]


@njit(inline="always")
def _dots2(o, p, xs, off, dv, du, k, m):
    # dv[t] += sum_q o[q] xs[off + t + q] and du[t] += sum_q p[q] xs[off + t + q] for t < k <= 5:
    # the weight gradients of k taps of two filters (the sums are reductions: fastmath's
    # reassociation lets LLVM vectorise them)
    if k == 5:
        s0 = s1 = s2 = s3 = s4 = o.dtype.type(0)
        t0 = t1 = t2 = t3 = t4 = o.dtype.type(0)
        x0, x1, x2 = xs[off:off + m], xs[off + 1:off + 1 + m], xs[off + 2:off + 2 + m]
        x3, x4 = xs[off + 3:off + 3 + m], xs[off + 4:off + 4 + m]
        for q in range(m):
            a, b = o[q], p[q]
            v0, v1, v2, v3, v4 = x0[q], x1[q], x2[q], x3[q], x4[q]
            s0 += a * v0
            s1 += a * v1
            s2 += a * v2
            s3 += a * v3
            s4 += a * v4
            t0 += b * v0
            t1 += b * v1
            t2 += b * v2
            t3 += b * v3
            t4 += b * v4
        dv[0] += s0
        dv[1] += s1
        dv[2] += s2
        dv[3] += s3
        dv[4] += s4
        du[0] += t0
        du[1] += t1
        du[2] += t2
        du[3] += t3
        du[4] += t4
    elif k == 3:
        s0 = s1 = s2 = o.dtype.type(0)
        t0 = t1 = t2 = o.dtype.type(0)
        x0, x1, x2 = xs[off:off + m], xs[off + 1:off + 1 + m], xs[off + 2:off + 2 + m]
        for q in range(m):
            a, b = o[q], p[q]
            v0, v1, v2 = x0[q], x1[q], x2[q]
            s0 += a * v0
            s1 += a * v1
            s2 += a * v2
            t0 += b * v0
            t1 += b * v1
            t2 += b * v2
        dv[0] += s0
        dv[1] += s1
        dv[2] += s2
        du[0] += t0
        du[1] += t1
        du[2] += t2
    else:
        for t in range(k):
            s0 = t0 = o.dtype.type(0)
            x0 = xs[off + t:off + t + m]
            for q in range(m):
                s0 += o[q] * x0[q]
                t0 += p[q] * x0[q]
            dv[t] += s0
            du[t] += t0


@njit(fastmath={"reassoc", "contract"}, **JIT)
def _direct_dw(xpad, dz, wp, dzp, dw):
    # Weight gradient of _direct_wide: dw[f, c, kh, kw] += sum_{n, i, j} dz[n, i, j, f]
    # xpad[n, c, (i + kh) Wp + j + kw]. dz (N, OH, OW, F); dzp (F2, OH * Wp) scratch, F2 = F
    # rounded up to even (a last row that stays zero): an image's dz as wide planes, zero at the
    # dropped columns j >= OW, so that each tap is one dot product of runs as long as the map;
    # dw (F2, C, FH, FW). Filters two by two, as _direct_wide.
    n_img, oh, ow, f_n = dz.shape
    f2, c, fh, fw = dw.shape
    m = oh * wp
    dzp[:] = 0
    for n in range(n_img):
        for i in range(oh):
            r = dz[n, i]
            for f in range(f_n):
                o = dzp[f, i * wp:i * wp + ow]
                for j in range(ow):
                    o[j] = r[j, f]
        for f in range(0, f2, 2):
            o, p = dzp[f], dzp[f + 1]
            for ci in range(c):
                xs = xpad[n, ci]
                for kh in range(fh):
                    for k0 in range(0, fw, 5):
                        _dots2(o, p, xs, kh * wp + k0, dw[f, ci, kh, k0:], dw[f + 1, ci, kh, k0:], min(5, fw - k0), m)


# output positions per block of _direct_wide. Each _taps2 call has a fixed cost (views, alias
# checks), so long runs pay even when the F blocks leave L1: one thread, 32 images, blocks of
# 256 / 1024 / 4096 positions: LeNet-5's first layer 0.26 / 0.17 / 0.17 ms, 32x32x3 3x3 -> 16
# 1.18 / 0.73 / 0.53-0.57 ms, 64x64x3 3x3 -> 16 5.1 / 2.4 / 2.0 ms.
DIRECT_BLOCK = 4096


def _direct_forward(x, w, bias, act, alpha, g, y):
    """conv2d_forward of a thin stride-1 layer by _direct_wide: the images split over
    threads, each thread's images padded into planes and convolved in one call."""
    wt = np.zeros((g.f2, g.c, g.fh, g.fw), x.dtype)     # (F2, C, FH, FW): a zero filter after an odd count
    wt[:g.f] = w.transpose(3, 2, 0, 1)
    rows = max(1, DIRECT_BLOCK // g.wp)
    b = np.zeros(0, x.dtype) if bias is None else bias
    code = CODES[act]
    inner = LINEAR if code == SOFTMAX else code    # softmax: across filters, a pass of its own

    def part(lo, hi):
        acc = np.empty((g.f2, rows * g.wp), x.dtype)
        _direct_wide(g.padded_planes(x, lo, hi), wt, b, inner, x.dtype.type(alpha), g.wp, g.oh, g.ow,
                     acc, y[lo:hi])
        if code == SOFTMAX:
            activate(y[lo:hi], act)

    run_chunks(g.n, part)
