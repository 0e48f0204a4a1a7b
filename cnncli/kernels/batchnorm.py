"""Batch normalisation over the rows of an (M, C) array: every position of every image is a
sample of its channel (or unit).

Training:   mean_c = sum_m x / M,  var_c = sum_m (x - mean)^2 / M   (two passes, float64 sums)
            y = gamma (x - mean) / sqrt(var + eps) + beta
Inference:  y = x * scale + shift,  scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale
Backward:   xhat = (x - mean) inv_std,  dbeta = sum dy,  dgamma = sum dy xhat,
            dx = gamma inv_std / M (M dy - dbeta - xhat dgamma)   (batch statistics)
            dx = gamma inv_std dy                                  (running statistics: constants)
xhat is recomputed from x in backward rather than kept: x is the previous layer's output, alive
anyway, so training keeps no (M, C) array of its own.
Synchronised over processes (data-parallel training): `total` sums float64 arrays over all
processes; the sums and M above become those of the whole batch, the parameter gradients stay
this process's (the step's all-reduce adds them). Rows are split over threads; partial sums
are added in chunk order, so results are bit-identical for a given thread count.
"""

import numpy as np
from numba import njit

from . import JIT
from .parallel import run_chunks

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
def _sums(x, lo, hi, out):
    # out[k] += sum over rows lo..hi of x[m, k]
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    acc = np.zeros(width, np.float64)
    xf = x.reshape(-1)
    m = lo + (hi - lo) // r * r           # rows lo..m in blocks, m..hi one by one
    for base in range(lo * c, m * c, width):
        xs = xf[base:base + width]        # a view: the loop indexes from 0 (else it stays scalar)
        for t in range(width):
            acc[t] += xs[t]
    _fold(acc, c, out)
    for row in range(m, hi):
        for k in range(c):
            out[k] += x[row, k]


@njit(**JIT)
def _square_sums(x, center, lo, hi, out):
    # out[k] += sum over rows lo..hi of (x[m, k] - center[k])^2
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    acc = np.zeros(width, np.float64)
    cen = _tiled(center, c, width)
    xf = x.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs = xf[base:base + width]
        for t in range(width):
            d = np.float64(xs[t]) - cen[t]
            acc[t] += d * d
    _fold(acc, c, out)
    for row in range(m, hi):
        for k in range(c):
            d = np.float64(x[row, k]) - center[k]
            out[k] += d * d


@njit(**JIT)
def _scale_shift(x, scale, shift, lo, hi, y):
    c = x.shape[1]
    for m in range(lo, hi):
        for k in range(c):
            y[m, k] = x[m, k] * scale[k] + shift[k]


@njit(**JIT)
def _grad_sums(dy, x, mean, inv_std, lo, hi, dbeta, dgamma):
    # dbeta[k] += sum dy[m, k], dgamma[k] += sum dy[m, k] xhat[m, k] over rows lo..hi (blocks as _sums)
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    acc_b, acc_g = np.zeros(width, np.float64), np.zeros(width, np.float64)
    mean_t, inv_t = _tiled(mean, c, width), _tiled(inv_std, c, width)
    xf, gf = x.reshape(-1), dy.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs, gs = xf[base:base + width], gf[base:base + width]
        for t in range(width):
            g = np.float64(gs[t])
            acc_b[t] += g
            acc_g[t] += g * ((xs[t] - mean_t[t]) * inv_t[t])
    _fold(acc_b, c, dbeta)
    _fold(acc_g, c, dgamma)
    for row in range(m, hi):
        for k in range(c):
            g = np.float64(dy[row, k])
            dbeta[k] += g
            dgamma[k] += g * ((x[row, k] - mean[k]) * inv_std[k])


@njit(**JIT)
def _grad_input(dy, x, mean, inv_std, a, b, d, lo, hi, dx):
    # dx = a dy - b - d xhat with a = gamma inv_std, b = a dbeta / M, d = a dgamma / M (blocks of
    # rows as _sums, the per-channel values repeated along a block)
    c = x.shape[1]
    r = _block_rows(c)
    width = r * c
    mean_t, inv_t = _tiled(mean, c, width), _tiled(inv_std, c, width)
    a_t, b_t, d_t = _tiled(a, c, width), _tiled(b, c, width), _tiled(d, c, width)
    xf, gf, of = x.reshape(-1), dy.reshape(-1), dx.reshape(-1)
    m = lo + (hi - lo) // r * r
    for base in range(lo * c, m * c, width):
        xs, gs, os = xf[base:base + width], gf[base:base + width], of[base:base + width]
        for t in range(width):
            xhat = (xs[t] - mean_t[t]) * inv_t[t]
            os[t] = a_t[t] * gs[t] - b_t[t] - d_t[t] * xhat
    for row in range(m, hi):
        for k in range(c):
            xhat = (x[row, k] - mean[k]) * inv_std[k]
            dx[row, k] = a[k] * dy[row, k] - b[k] - d[k] * xhat


def _chunked_sum(kernel, rows, c, *args):
    """Sum a kernel's per-chunk float64 partial sums, in chunk order."""
    def part(lo, hi):
        out = np.zeros(c, np.float64)
        kernel(*args, lo, hi, out)
        return out
    parts = run_chunks(rows, part, MIN_ROWS_PER_THREAD)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def batch_stats(x2, total=None):
    """(M, C) -> (mean, biased var, M) per column, float64. total: None, or a function summing a
    float64 array over all processes: then the statistics and M are the whole batch's."""
    m, c = x2.shape
    sums = _chunked_sum(_sums, m, c, x2)
    if total is not None:
        both = total(np.append(sums, m))                   # (C + 1,): sums and row counts together
        sums, m = both[:-1], both[-1]
    mean = sums / m
    squares = _chunked_sum(_square_sums, x2.shape[0], c, x2, mean)
    var = (squares if total is None else total(squares)) / m
    return mean, var, m


def normalize(x2, scale, shift):
    """y = x * scale + shift per column, (M, C) -> a new (M, C)."""
    y = np.empty_like(x2)
    scale, shift = scale.astype(x2.dtype), shift.astype(x2.dtype)
    run_chunks(x2.shape[0], lambda lo, hi: _scale_shift(x2, scale, shift, lo, hi, y), MIN_ROWS_PER_THREAD)
    return y


def batchnorm_backward(dy2, x2, mean, inv_std, gamma, need_dx=True, batch=True, total=None):
    """-> (dx (M, C) or None, dgamma, dbeta) for y = gamma (x - mean) inv_std + beta.
    batch: mean and inv_std are the batch's statistics (functions of x); False: running
    statistics, constants, so dx = gamma inv_std dy. total (batch statistics over processes, as
    in batch_stats): dx uses the whole batch's sums and M; dgamma, dbeta stay this process's."""
    m, c = x2.shape
    dt = x2.dtype
    mean, inv_std = mean.astype(dt), inv_std.astype(dt)

    def part(lo, hi):
        db, dg = np.zeros(c, np.float64), np.zeros(c, np.float64)
        _grad_sums(dy2, x2, mean, inv_std, lo, hi, db, dg)
        return db, dg
    parts = run_chunks(m, part, MIN_ROWS_PER_THREAD)
    dbeta, dgamma = parts[0]
    for db, dg in parts[1:]:
        dbeta, dgamma = dbeta + db, dgamma + dg
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
    dx = np.empty_like(x2)
    a = a.astype(dt)
    run_chunks(m, lambda lo, hi: _grad_input(dy2, x2, mean, inv_std, a, b, d, lo, hi, dx), MIN_ROWS_PER_THREAD)
    return dx, dgamma.astype(dt), dbeta.astype(dt)
