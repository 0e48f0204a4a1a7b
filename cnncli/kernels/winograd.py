"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3), NHWC.

Each 2x2 block of outputs comes from a 4x4 tile d of the input:
    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        (.) element-wise, per input channel, summed over channels
    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
The element-wise stage, summed over channels, is 16 GEMMs (tiles x C) @ (C x F): 16 multiplications
per 2x2 outputs instead of 36, 2.25x fewer. Cross-correlation, as conv: no kernel flip.

The input gradient of a stride-1 3x3 convolution is one too (of dL/dz, with the filters turned by
180 degrees and channels and filters swapped), so backward uses the same kernels for dx; dw stays
an im2col GEMM.
Relative error under 1e-6 against direct convolution; budgets.uses_winograd says which layers use
it (timings in the commit that added it and in BENCHMARKS.md). The transformed tiles are stored (16, T + 7, C): with T x C a power of
two the 16 write streams fall on the same cache sets (the probe: 24 ms against 4 ms).
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import activate
from .parallel import run_chunks

TILES_PER_STEP = 2048   # tiles per batch of 16 GEMMs: (16, 2048, C) buffers stay near the caches
SKEW = 7                # extra rows between the 16 planes of a buffer (see the docstring)


@njit(**JIT)
def _tile_transform(d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33,
                    v, t, c):
    # v[:, t, c] = B^T d B, the 4x4 tile d flattened row by row
    a0, a1, a2, a3 = d00 - d20, d01 - d21, d02 - d22, d03 - d23      # rows: B^T d
    b0, b1, b2, b3 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
    e0, e1, e2, e3 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
    f0, f1, f2, f3 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
    v[0, t, c] = a0 - a2                                            # columns: (B^T d) B
    v[1, t, c] = a1 + a2
    v[2, t, c] = a2 - a1
    v[3, t, c] = a1 - a3
    v[4, t, c] = b0 - b2
    v[5, t, c] = b1 + b2
    v[6, t, c] = b2 - b1
    v[7, t, c] = b1 - b3
    v[8, t, c] = e0 - e2
    v[9, t, c] = e1 + e2
    v[10, t, c] = e2 - e1
    v[11, t, c] = e1 - e3
    v[12, t, c] = f0 - f2
    v[13, t, c] = f1 + f2
    v[14, t, c] = f2 - f1
    v[15, t, c] = f1 - f3


@njit(**JIT)
def _input_tiles(x, pt, pl, th, tw, v):
    # x (n, H, W, C) -> v[k, t, c] = (B^T d B)[k // 4, k % 4] for tile t = (n, ti, tj), channel c.
    # Interior tiles read without checks (a loop LLVM vectorises over c); border tiles through a
    # zero-padded 4x4 copy.
    n_img, h, w, c_in = x.shape
    d = np.zeros((4, 4, c_in), x.dtype)
    for n in range(n_img):
        for ti in range(th):
            r0 = 2 * ti - pt
            for tj in range(tw):
                c0 = 2 * tj - pl
                t = (n * th + ti) * tw + tj
                if r0 >= 0 and c0 >= 0 and r0 + 4 <= h and c0 + 4 <= w:
                    for c in range(c_in):
                        _tile_transform(x[n, r0, c0, c], x[n, r0, c0 + 1, c], x[n, r0, c0 + 2, c],
                                        x[n, r0, c0 + 3, c], x[n, r0 + 1, c0, c], x[n, r0 + 1, c0 + 1, c],
                                        x[n, r0 + 1, c0 + 2, c], x[n, r0 + 1, c0 + 3, c], x[n, r0 + 2, c0, c],
                                        x[n, r0 + 2, c0 + 1, c], x[n, r0 + 2, c0 + 2, c], x[n, r0 + 2, c0 + 3, c],
                                        x[n, r0 + 3, c0, c], x[n, r0 + 3, c0 + 1, c], x[n, r0 + 3, c0 + 2, c],
                                        x[n, r0 + 3, c0 + 3, c], v, t, c)
                else:
                    d[:] = 0
                    for a in range(4):
                        if 0 <= r0 + a < h:
                            for b in range(4):
                                if 0 <= c0 + b < w:
                                    d[a, b, :] = x[n, r0 + a, c0 + b, :]
                    for c in range(c_in):
                        _tile_transform(d[0, 0, c], d[0, 1, c], d[0, 2, c], d[0, 3, c], d[1, 0, c], d[1, 1, c],
                                        d[1, 2, c], d[1, 3, c], d[2, 0, c], d[2, 1, c], d[2, 2, c], d[2, 3, c],
                                        d[3, 0, c], d[3, 1, c], d[3, 2, c], d[3, 3, c], v, t, c)


@njit(**JIT)
def _output_tiles(m, th, tw, y):
    # m[k, t, f] (16, T, F) -> y (n, OH, OW, F): the 2x2 block A^T m A of every tile
    n_img, oh, ow, f_out = y.shape
    for n in range(n_img):
        for ti in range(th):
            i0 = 2 * ti
            for tj in range(tw):
                j0 = 2 * tj
                t = (n * th + ti) * tw + tj
                down, right = i0 + 1 < oh, j0 + 1 < ow
                for f in range(f_out):
                    # rows: A^T m  (row 0 = m0 + m1 + m2, row 1 = m1 - m2 - m3)
                    s0 = m[0, t, f] + m[4, t, f] + m[8, t, f]
                    s1 = m[1, t, f] + m[5, t, f] + m[9, t, f]
                    s2 = m[2, t, f] + m[6, t, f] + m[10, t, f]
                    s3 = m[3, t, f] + m[7, t, f] + m[11, t, f]
                    q0 = m[4, t, f] - m[8, t, f] - m[12, t, f]
                    q1 = m[5, t, f] - m[9, t, f] - m[13, t, f]
                    q2 = m[6, t, f] - m[10, t, f] - m[14, t, f]
                    q3 = m[7, t, f] - m[11, t, f] - m[15, t, f]
                    # columns: (A^T m) A
                    y[n, i0, j0, f] = s0 + s1 + s2
                    if right:
                        y[n, i0, j0 + 1, f] = s1 - s2 - s3
                    if down:
                        y[n, i0 + 1, j0, f] = q0 + q1 + q2
                        if right:
                            y[n, i0 + 1, j0 + 1, f] = q1 - q2 - q3


G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def filter_tiles(w):
    """(3, 3, C, F) filters -> U (16, C, F) = G g G^T per (c, f), computed in float64."""
    u = np.tensordot(G, np.tensordot(G, w.astype(np.float64), axes=([1], [1])), axes=([1], [1]))
    # u[a, b, c, f] = sum_ij G[a, i] G[b, j] w[i, j, c, f]
    return np.ascontiguousarray(u.reshape(16, w.shape[2], w.shape[3]), dtype=w.dtype)


def winograd_conv(x, u, pads, out_hw, bias=None, act="linear", alpha=0.01):
    """y = act(conv3x3(x) + bias), stride 1, the filters given as U = filter_tiles(w).
    x (N, H, W, C) C-contiguous, u (16, C, F) -> y (N, OH, OW, F). Images are split over threads;
    each thread runs a few images at a time through the transforms and 16 single-threaded GEMMs."""
    n, _, _, c = x.shape
    f = u.shape[2]
    oh, ow = out_hw
    th, tw = -(-oh // 2), -(-ow // 2)
    step = max(1, TILES_PER_STEP // (th * tw))
    y = np.empty((n, oh, ow, f), x.dtype)

    def part(lo, hi):
        rows = min(step, hi - lo) * th * tw
        v_buf = np.empty((16, rows + SKEW, c), x.dtype)
        m_buf = np.empty((16, rows + SKEW, f), x.dtype)
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            t = (b - a) * th * tw
            v, m = v_buf[:, :t], m_buf[:, :t]
            _input_tiles(x[a:b], pads[0], pads[2], th, tw, v)
            np.matmul(v, u, out=m)
            _output_tiles(m, th, tw, y[a:b])
        activate(y[lo:hi], act, alpha, bias)

    run_chunks(n, part)
    return y


def winograd_input_grad(dz, w, pads, in_hw):
    """dL/dx of a stride-1 3x3 convolution from dz = dL/d(pre-activation) (N, OH, OW, F):
    the convolution of dz with the filters turned 180 degrees, channels and filters swapped,
    padded by 2 - p on each side. w (3, 3, C, F) -> dx (N, H, W, C)."""
    turned = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))   # (3, 3, F, C)
    t, b, left, r = pads
    return winograd_conv(np.ascontiguousarray(dz), filter_tiles(turned), (2 - t, 2 - b, 2 - left, 2 - r), in_hw)
