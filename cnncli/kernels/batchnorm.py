"""Batch normalisation over the rows of an (M, C) array: every position of every image is a
sample of its channel (or unit).

Training:   mean_c = sum_m x / M,  var_c = sum_m (x - mean)^2 / M   (one pass, float64 sums)
            y = gamma (x - mean) / sqrt(var + eps) + beta, then the activation after it, if any
Inference:  y = x * scale + shift,  scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale
Backward:   xhat = (x - mean) inv_std,  dbeta = sum dy,  dgamma = sum dy xhat,
            dx = gamma inv_std / M (M dy - dbeta - xhat dgamma)   (batch statistics)
            dx = gamma inv_std dy                                  (running statistics: constants)
xhat is recomputed from x in backward rather than kept: x is the previous layer's output, alive
anyway, so training keeps no (M, C) array of its own. So is the output of an activation applied
after it (`then`), for that activation's derivative: each backward pass then reads dy and x, not
the output too. MobileNetV2's shapes, 16 images, 2 threads, ms old / new, same bits: 112x112x96
ReLU6 14.8 / 13.0, 112x112x32 5.0 / 3.8 (medians of 15 alternating calls); its batchnorm backward in
a training step 98.6 -> 81.5 ms (two runs minutes apart, not alternating: noisy).
Synchronised over processes (data-parallel training): `total` sums float64 arrays over all
processes; the sums and M above become those of the whole batch, the parameter gradients stay
this process's (the step's all-reduce adds them). Rows are split over threads; partial sums
are added in chunk order, so results are bit-identical for a given thread count.
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import CODES, HARDSIGMOID, LEAKY_RELU, LINEAR, RELU, RELU6, _act, _grad_from_output, constants
from .parallel import added_in_order, run_chunks

MIN_ROWS_PER_THREAD = 4096


# The sums run over blocks of R rows as one flat loop of R * C values into R * C float64 partial
# sums (R * C about 128), folded into the C sums at the end. Summing row by row into C sums made
# each sum wait for its own last add (store, load, add: a chain per row). 32,768 x 16, one thread,
# us row by row / blocks: sums 106 / 43, square sums 107 / 56-60, gradient sums 163 / 92-93, and
# the input gradient (no sums; the same arithmetic) 112 / 95.
BLOCK = 128


@njit(inline="always")
def _block_rows(c):
    return max(1, BLOCK // c)


@njit(inline="always")
def _tiled(v, c, width):
    # v (C,) repeated to (width,): v[t % C], in v's type
    out = np.empty(width, v.dtype)
    for t in range(width):
        out[t] = v[t % c]
    return out


@njit(inline="always")
def _fold(acc, c, out):
    # out[k] += sum_r acc[r C + k]
    for t in range(acc.shape[0]):
        out[t % c] += acc[t]


@njit(**JIT)
def _shifted_sums(x, shift, lo, hi, out1, out2):
    # out1[k] += sum (x[m, k] - shift[k]), out2[k] += sum (x[m, k] - shift[k])^2 over rows lo..hi:
    # both in one read of x, in blocks of rows (above)
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    acc1, acc2 = np.zeros(width, np.float64), np.zeros(width, np.float64)
    sh = _tiled(shift, c, width)
    xf = x.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs = xf[base:base + width]
        for t in range(width):
            d = np.float64(xs[t]) - sh[t]
            acc1[t] += d
            acc2[t] += d * d
    _fold(acc1, c, out1)
    _fold(acc2, c, out2)
    for row in range(m, hi):
        for k in range(c):
            d = np.float64(x[row, k]) - shift[k]
            out1[k] += d
            out2[k] += d * d


@njit(inline="always")
def _scale_shift_loop(x, scale, shift, act, alpha, k, lo, hi, y):
    c = x.shape[1]
    for m in range(lo, hi):
        for j in range(c):
            y[m, j] = _act(x[m, j] * scale[j] + shift[j], act, alpha, k)


@njit(**JIT)
def _scale_shift(x, scale, shift, act, alpha, lo, hi, y):
    # y = act(x scale + shift); one loop per activation with its code a constant (as activation.py)
    k = constants(x)
    if act == LINEAR:
        _scale_shift_loop(x, scale, shift, LINEAR, alpha, k, lo, hi, y)
    elif act == RELU:
        _scale_shift_loop(x, scale, shift, RELU, alpha, k, lo, hi, y)
    elif act == RELU6:
        _scale_shift_loop(x, scale, shift, RELU6, alpha, k, lo, hi, y)
    elif act == LEAKY_RELU:
        _scale_shift_loop(x, scale, shift, LEAKY_RELU, alpha, k, lo, hi, y)
    elif act == HARDSIGMOID:
        _scale_shift_loop(x, scale, shift, HARDSIGMOID, alpha, k, lo, hi, y)
    else:
        _scale_shift_loop(x, scale, shift, act, alpha, k, lo, hi, y)


# The backward kernels take the activation that batchnorm applied after it (Model.forward's
# `then`): dL/dy is dy through that activation's derivative, from its output y, value by value
# as the activation layer's own backward would have written it; y is recomputed from x, scale
# and shift as _scale_shift computed it (LINEAR: dy itself, nothing recomputed).

@njit(inline="always")
def _grad_sums_loop(dy, x, mean, inv_std, scale, shift, act, alpha, k, lo, hi, dbeta, dgamma):
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    acc_b, acc_g = np.zeros(width, np.float64), np.zeros(width, np.float64)
    mean_t, inv_t = _tiled(mean, c, width), _tiled(inv_std, c, width)
    sc_t, sh_t = _tiled(scale, c, width), _tiled(shift, c, width)
    xf, gf = x.reshape(-1), dy.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs, gs = xf[base:base + width], gf[base:base + width]
        for t in range(width):
            v = _act(xs[t] * sc_t[t] + sh_t[t], act, alpha, k)     # forward's output, recomputed
            g = np.float64(_grad_from_output(gs[t], v, act, alpha, k))
            acc_b[t] += g
            acc_g[t] += g * ((xs[t] - mean_t[t]) * inv_t[t])
    _fold(acc_b, c, dbeta)
    _fold(acc_g, c, dgamma)
    for row in range(m, hi):
        for j in range(c):
            v = _act(x[row, j] * scale[j] + shift[j], act, alpha, k)
            g = np.float64(_grad_from_output(dy[row, j], v, act, alpha, k))
            dbeta[j] += g
            dgamma[j] += g * ((x[row, j] - mean[j]) * inv_std[j])


@njit(**JIT)
def _grad_sums(dy, x, mean, inv_std, scale, shift, act, alpha, lo, hi, dbeta, dgamma):
    # dbeta[k] += sum g[m, k], dgamma[k] += sum g[m, k] xhat[m, k] over rows lo..hi (blocks as
    # above), g = dy through the activation after batchnorm
    k = constants(x)
    if act == LINEAR:
        _grad_sums_loop(dy, x, mean, inv_std, scale, shift, LINEAR, alpha, k, lo, hi, dbeta, dgamma)
    elif act == RELU:
        _grad_sums_loop(dy, x, mean, inv_std, scale, shift, RELU, alpha, k, lo, hi, dbeta, dgamma)
    elif act == RELU6:
        _grad_sums_loop(dy, x, mean, inv_std, scale, shift, RELU6, alpha, k, lo, hi, dbeta, dgamma)
    else:
        _grad_sums_loop(dy, x, mean, inv_std, scale, shift, act, alpha, k, lo, hi, dbeta, dgamma)


@njit(inline="always")
def _grad_input_loop(dy, x, mean, inv_std, scale, shift, act, alpha, k, a, b, d, lo, hi, dx):
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    mean_t, inv_t = _tiled(mean, c, width), _tiled(inv_std, c, width)
    sc_t, sh_t = _tiled(scale, c, width), _tiled(shift, c, width)
    a_t, b_t, d_t = _tiled(a, c, width), _tiled(b, c, width), _tiled(d, c, width)
    xf, gf, of = x.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs, gs, os = xf[base:base + width], gf[base:base + width], of[base:base + width]
        for t in range(width):
            xhat = (xs[t] - mean_t[t]) * inv_t[t]
            v = _act(xs[t] * sc_t[t] + sh_t[t], act, alpha, k)
            os[t] = a_t[t] * _grad_from_output(gs[t], v, act, alpha, k) - b_t[t] - d_t[t] * xhat
    for row in range(m, hi):
        for j in range(c):
            xhat = (x[row, j] - mean[j]) * inv_std[j]
            v = _act(x[row, j] * scale[j] + shift[j], act, alpha, k)
            dx[row, j] = a[j] * _grad_from_output(dy[row, j], v, act, alpha, k) - b[j] - d[j] * xhat


@njit(**JIT)
def _grad_input(dy, x, mean, inv_std, scale, shift, act, alpha, a, b, d, lo, hi, dx):
    # dx = a g - b - d xhat with a = gamma inv_std, b = a dbeta / M, d = a dgamma / M, g as in
    # _grad_sums (blocks of rows as above, the per-channel values repeated along a block)
    k = constants(x)
    if act == LINEAR:
        _grad_input_loop(dy, x, mean, inv_std, scale, shift, LINEAR, alpha, k, a, b, d, lo, hi, dx)
    elif act == RELU:
        _grad_input_loop(dy, x, mean, inv_std, scale, shift, RELU, alpha, k, a, b, d, lo, hi, dx)
    elif act == RELU6:
        _grad_input_loop(dy, x, mean, inv_std, scale, shift, RELU6, alpha, k, a, b, d, lo, hi, dx)
    else:
        _grad_input_loop(dy, x, mean, inv_std, scale, shift, act, alpha, k, a, b, d, lo, hi, dx)


def _chunked_sums(kernel, rows, c, *args):
    """Add a kernel's per-chunk pairs of float64 partial sums, in chunk order."""
    def part(lo, hi):
        out1, out2 = np.zeros(c, np.float64), np.zeros(c, np.float64)
        kernel(*args, lo, hi, out1, out2)
        return out1, out2
    return added_in_order(run_chunks(rows, part, MIN_ROWS_PER_THREAD))


def batch_stats(x2, total=None):
    """(M, C) -> (mean, biased var, M) per column, float64. total: None, or a function summing a
    float64 array over all processes: then the statistics and M are the whole batch's.
    One read of x: the sums of x - s and of its square, s = the first row (a sample of each
    column, so var = E[(x-s)^2] - E[x-s]^2 cancels little: with s 1,000 standard deviations from
    the mean, var was within 3.2e-10 of numpy's float64 two-pass value over 50,000 rows). Over
    processes, each one's centred sum of squares is moved to the common mean (Chan et al.)."""
    m, c = x2.shape
    shift = x2[0].astype(np.float64) if m else np.zeros(c)
    s1, s2 = _chunked_sums(_shifted_sums, m, c, x2, shift)
    mean = shift + s1 / max(m, 1)
    centred = np.maximum(s2 - s1 * (s1 / max(m, 1)), 0.0)      # sum of (x - mean)^2 over these rows
    if total is None:
        return mean, centred / m, m
    both = total(np.append(mean * m, m))                   # (C + 1,): sums and row counts together
    rows = both[-1]
    whole = both[:-1] / rows
    centred = total(centred + m * (mean - whole) ** 2)
    return whole, centred / rows, rows


def normalize(x2, scale, shift, act="linear", alpha=0.01):
    """y = act(x * scale + shift) per column, (M, C) -> a new (M, C): batchnorm and the activation
    that follows it in one pass (activation.CODES)."""
    y = np.empty_like(x2)
    scale, shift = scale.astype(x2.dtype), shift.astype(x2.dtype)
    code, a = CODES[act], x2.dtype.type(alpha)
    run_chunks(x2.shape[0], lambda lo, hi: _scale_shift(x2, scale, shift, code, a, lo, hi, y), MIN_ROWS_PER_THREAD)
    return y


def batchnorm_backward(dy2, x2, mean, inv_std, gamma, need_dx=True, batch=True, total=None, then=None, by_rows=False):
    """-> (dx (M, C) or None, dgamma, dbeta) for y = gamma (x - mean) inv_std + beta.
    batch: mean and inv_std are the batch's statistics (functions of x); False: running
    statistics, constants, so dx = gamma inv_std dy. total (batch statistics over processes, as
    in batch_stats): dx uses the whole batch's sums and M; dgamma, dbeta stay this process's.
    then: (function, alpha, scale, shift) of the activation that normalize applied after batchnorm,
    with the (C,) scale and shift it applied (in x2's dtype): dy2 is then dL/d(that output), taken
    through its derivative in both passes, the output recomputed from x2 as normalize computed it
    (the same operations: the same bits), which reads two arrays a pass where reading the output
    would read three.
    by_rows: dx as a RowGradient, computed a run of rows at a time by the layer that reads it."""
    m, c = x2.shape
    dt = x2.dtype
    mean, inv_std = mean.astype(dt), inv_std.astype(dt)
    if then:
        act, alpha, scale, shift = CODES[then[0]], dt.type(then[1]), then[2].astype(dt), then[3].astype(dt)
    else:
        act, alpha, scale, shift = LINEAR, dt.type(0), np.ones(c, dt), np.zeros(c, dt)

    def part(lo, hi):
        db, dg = np.zeros(c, np.float64), np.zeros(c, np.float64)
        _grad_sums(dy2, x2, mean, inv_std, scale, shift, act, alpha, lo, hi, db, dg)
        return db, dg
    dbeta, dgamma = added_in_order(run_chunks(m, part, MIN_ROWS_PER_THREAD))
    sum_beta, sum_gamma, rows = dbeta, dgamma, m
    if total is not None and batch:  # once per call, dx wanted or not: every process joins the same sums
        both = total(np.concatenate([dbeta, dgamma, [m]]))
        sum_beta, sum_gamma, rows = both[:c], both[c:2 * c], both[-1]
    if not need_dx:
        return None, dgamma.astype(dt), dbeta.astype(dt)
    a = gamma.astype(np.float64) * inv_std
    b, d = (a * sum_beta / rows).astype(dt), (a * sum_gamma / rows).astype(dt)
    if not batch:
        b, d = np.zeros_like(b), np.zeros_like(d)
    args = (mean, inv_std, scale, shift, act, alpha, a.astype(dt), b, d)
    if by_rows:
        return RowGradient(dy2, x2, args), dgamma.astype(dt), dbeta.astype(dt)
    dx = np.empty_like(x2)
    run_chunks(m, lambda lo, hi: _grad_input(dy2, x2, *args, lo, hi, dx), MIN_ROWS_PER_THREAD)
    return dx, dgamma.astype(dt), dbeta.astype(dt)


class RowGradient:
    """A batchnorm's dx (M, C), never written whole: rows(lo, hi) computes rows lo..hi of it,
    the same bits as batchnorm_backward's array (each value is its own formula). A 1x1 conv
    before the batchnorm takes it in its backward (kernels/conv.py: _pointwise_backward), a run
    of rows at a time while they are in the cache: the batchnorm's dx is neither written to
    memory nor read back."""

    def __init__(self, dy2, x2, args):
        self.dy2, self.x2, self.args = dy2, x2, args
        self.shape, self.dtype = x2.shape, x2.dtype

    def rows(self, lo, hi):
        out = np.empty((hi - lo, self.shape[1]), self.dtype)
        _grad_input(self.dy2[lo:hi], self.x2[lo:hi], *self.args, 0, hi - lo, out)
        return out
