"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3), NHWC: forward, input
gradient and weight gradient.

Each 4x4 block of outputs comes from a 6x6 tile d of the input (tiles overlap by 2):
    Y = A^T [ U (.) V ] A,   U = G g G^T,   V = B^T d B     (.) element-wise, summed over channels
with the interpolation points 0, 1, -1, 2, -2 and infinity (Lavin and Gray 2016):
    B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
    A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
The element-wise stage, summed over channels, is 36 GEMMs (tiles x C) @ (C x F): 36 multiplications
per 16 outputs instead of 144, 4x fewer (F(2x2, 3x3) saves 2.25x). Cross-correlation, as conv: no
kernel flip.

Backward, from dz = dL/d(pre-activation):
- dx: the input gradient of a stride-1 3x3 convolution is one too (of dz, with the filters turned
  by 180 degrees and channels and filters swapped), so it runs through the same forward kernels.
- dw: with dM = A dZ A^T per tile (dZ the tile's 4x4 block of dz), dU = sum over tiles V^T dM
  (36 GEMMs (C x tiles) @ (tiles x F)) and dw = G^T dU G.
Relative error against direct convolution, float32, random data: about 1e-5 of the largest output
(F(2x2, 3x3): 3e-7); the tests hold it to 1e-4. budgets.uses_winograd says which layers use it.

Layout: the transformed tiles are stored (36, T + 7, C): with T x C a power of two the 36 write
streams would fall on the same cache sets (a probe of F(2x2, 3x3): 24 ms against 4 ms).
The transforms are two passes per tile (rows, then columns), each a loop over channels on
contiguous memory that LLVM vectorises (one pass with the 36 values in scalars ran 1.6x slower).
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import activate
from .parallel import run_chunks

TILES_PER_STEP = 256    # tiles per batch of 36 GEMMs (VGG layers, fwd + dw + dx: 128 tiles 39.4 ms, 256 38.8, 512 40.4, 1024 46.4)
SKEW = 7                # extra rows between the 36 planes of a buffer (see the docstring)
OUT = 4                 # outputs per tile side


@njit(inline="always")
def _bt(d0, d1, d2, d3, d4, d5):
    # B^T d for one column of 6
    return (4 * d0 - 5 * d2 + d4, d3 + d4 - 4 * (d1 + d2), 4 * (d1 - d2) + d4 - d3,
            2 * (d3 - d1) + d4 - d2, 2 * (d1 - d3) + d4 - d2, 4 * d1 - 5 * d3 + d5)


@njit(inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    # A^T m for one column of 6 -> 4
    a, b = m1 + m2, m1 - m2
    c, d = m3 + m4, m3 - m4
    return m0 + a + c, b + 2 * d, a + 4 * c, b + 8 * d + m5


@njit(inline="always")
def _a(y0, y1, y2, y3):
    # A y for one column of 4 -> 6 (the transpose of _at, for the weight gradient)
    even, odd = y0 + y2, y1 + y3
    even4, odd2 = y0 + 4 * y2, 2 * y1 + 8 * y3
    return y0, even + odd, even - odd, even4 + odd2, even4 - odd2, y3


@njit(inline="always")
def _bt_row(row, c0, out, c_in):
    # out[j, c] = (B^T row[c0:c0 + 6, c])[j]: one row of a tile through B
    for c in range(c_in):
        out[0, c], out[1, c], out[2, c], out[3, c], out[4, c], out[5, c] = _bt(
            row[c0, c], row[c0 + 1, c], row[c0 + 2, c], row[c0 + 3, c], row[c0 + 4, c], row[c0 + 5, c])


@njit(**JIT)
def _input_tiles(x, pt, pl, th, tw, v):
    # x (n, H, W, C) -> v[6 a + b, t, c] = (B^T d B)[a, b] of tile t = (n, ti, tj), rows t < n th tw.
    # Rows R = d B into r, then columns V = B^T R into v. Interior tiles read x directly; border
    # tiles go through a zero-padded copy.
    n_img, h, w, c_in = x.shape
    r = np.empty((6, 6, c_in), x.dtype)
    d = np.zeros((6, 6, c_in), x.dtype)
    for n in range(n_img):
        for ti in range(th):
            r0 = 4 * ti - pt
            for tj in range(tw):
                c0 = 4 * tj - pl
                t = (n * th + ti) * tw + tj
                inside = r0 >= 0 and c0 >= 0 and r0 + 6 <= h and c0 + 6 <= w
                if not inside:
                    d[:] = 0
                    for a in range(6):
                        if 0 <= r0 + a < h:
                            for b in range(6):
                                if 0 <= c0 + b < w:
                                    d[a, b, :] = x[n, r0 + a, c0 + b, :]
                for a in range(6):
                    if inside:
                        _bt_row(x[n, r0 + a], c0, r[a], c_in)
                    else:
                        _bt_row(d[a], 0, r[a], c_in)
                for b in range(6):
                    for c in range(c_in):
                        (v[b, t, c], v[6 + b, t, c], v[12 + b, t, c], v[18 + b, t, c], v[24 + b, t, c],
                         v[30 + b, t, c]) = _bt(r[0, b, c], r[1, b, c], r[2, b, c], r[3, b, c], r[4, b, c],
                                                r[5, b, c])


@njit(**JIT)
def _output_tiles(m, th, tw, y):
    # m[k, t, f] (36, T, F) -> y (n, OH, OW, F): the 4x4 block A^T m A of every tile, cut at the edges
    n_img, oh, ow, f_out = y.shape
    s = np.empty((4, 6, f_out), y.dtype)
    o = np.empty((4, 4, f_out), y.dtype)
    for n in range(n_img):
        for ti in range(th):
            i0 = 4 * ti
            for tj in range(tw):
                j0 = 4 * tj
                t = (n * th + ti) * tw + tj
                for b in range(6):          # columns: S = A^T m
                    for f in range(f_out):
                        s[0, b, f], s[1, b, f], s[2, b, f], s[3, b, f] = _at(
                            m[b, t, f], m[6 + b, t, f], m[12 + b, t, f], m[18 + b, t, f], m[24 + b, t, f],
                            m[30 + b, t, f])
                for a in range(4):          # rows: S A
                    for f in range(f_out):
                        o[a, 0, f], o[a, 1, f], o[a, 2, f], o[a, 3, f] = _at(
                            s[a, 0, f], s[a, 1, f], s[a, 2, f], s[a, 3, f], s[a, 4, f], s[a, 5, f])
                for a in range(min(4, oh - i0)):
                    for b in range(min(4, ow - j0)):
                        y[n, i0 + a, j0 + b, :] = o[a, b, :]


@njit(**JIT)
def _gradient_tiles(dz, th, tw, dm):
    # dz (n, OH, OW, F) -> dm[6 a + b, t, f] = (A dZ A^T)[a, b], dZ the 4x4 block of tile t
    # (zero past the edges): columns S = A dZ, then rows S A^T.
    n_img, oh, ow, f_out = dz.shape
    g = np.zeros((4, 4, f_out), dz.dtype)
    s = np.empty((6, 4, f_out), dz.dtype)
    for n in range(n_img):
        for ti in range(th):
            i0 = 4 * ti
            for tj in range(tw):
                j0 = 4 * tj
                t = (n * th + ti) * tw + tj
                if i0 + 4 > oh or j0 + 4 > ow:
                    g[:] = 0
                for a in range(min(4, oh - i0)):
                    for b in range(min(4, ow - j0)):
                        g[a, b, :] = dz[n, i0 + a, j0 + b, :]
                for b in range(4):
                    for f in range(f_out):
                        s[0, b, f], s[1, b, f], s[2, b, f], s[3, b, f], s[4, b, f], s[5, b, f] = _a(
                            g[0, b, f], g[1, b, f], g[2, b, f], g[3, b, f])
                for a in range(6):
                    for f in range(f_out):
                        (dm[6 * a, t, f], dm[6 * a + 1, t, f], dm[6 * a + 2, t, f], dm[6 * a + 3, t, f],
                         dm[6 * a + 4, t, f], dm[6 * a + 5, t, f]) = _a(s[a, 0, f], s[a, 1, f], s[a, 2, f],
                                                                        s[a, 3, f])


G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
GG = np.kron(G, G)      # (36, 9): U[6 a + b] = sum_ij G[a, i] G[b, j] g[3 i + j], one GEMM for all filters


def filter_tiles(w):
    """(3, 3, C, F) filters -> U (36, C, F) = G g G^T per (c, f), computed in float64 as one GEMM
    (np.tensordot twice took 2.8 ms for 128 x 128 filters, this 0.37)."""
    u = GG @ w.reshape(9, -1).astype(np.float64)
    return u.astype(w.dtype).reshape(36, w.shape[2], w.shape[3])


def _tiles(out_hw):
    return -(-out_hw[0] // OUT), -(-out_hw[1] // OUT)


def _steps(lo, hi, per_image):
    """Runs of images a..b holding about TILES_PER_STEP tiles."""
    step = max(1, TILES_PER_STEP // per_image)
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def _buffer(images, per_image, depth, dtype):
    return np.empty((36, images * per_image + SKEW, depth), dtype)


def winograd_conv(x, u, pads, out_hw, bias=None, act="linear", alpha=0.01):
    """y = act(conv3x3(x) + bias), stride 1, the filters given as U = filter_tiles(w).
    x (N, H, W, C) C-contiguous, u (36, C, F) -> y (N, OH, OW, F). Images are split over threads;
    each thread runs a few images at a time through the transforms and 36 single-threaded GEMMs."""
    n, _, _, c = x.shape
    f = u.shape[2]
    th, tw = _tiles(out_hw)
    y = np.empty((n,) + tuple(out_hw) + (f,), x.dtype)

    def part(lo, hi):
        steps = _steps(lo, hi, th * tw)
        images = steps[0][1] - steps[0][0]
        v, m = _buffer(images, th * tw, c, x.dtype), _buffer(images, th * tw, f, x.dtype)
        for a, b in steps:
            t = (b - a) * th * tw
            _input_tiles(x[a:b], pads[0], pads[2], th, tw, v)
            np.matmul(v[:, :t], u, out=m[:, :t])
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


def winograd_weight_grad(x, dz, pads):
    """dL/dw (3, 3, C, F) of a stride-1 3x3 convolution of x (N, H, W, C) from dz (N, OH, OW, F):
    dU = sum over tiles V^T dM (36 GEMMs per run of images), then dw = G^T dU G in float64.
    Each thread sums its own images; the threads' sums are added in chunk order (bit-identical
    reruns for a given thread count)."""
    n, _, _, c = x.shape
    f = dz.shape[3]
    th, tw = _tiles(dz.shape[1:3])
    dz = np.ascontiguousarray(dz)

    def part(lo, hi):
        steps = _steps(lo, hi, th * tw)
        images = steps[0][1] - steps[0][0]
        v, dm = _buffer(images, th * tw, c, x.dtype), _buffer(images, th * tw, f, x.dtype)
        du, tmp = np.zeros((36, c, f), x.dtype), np.empty((36, c, f), x.dtype)
        for a, b in steps:
            t = (b - a) * th * tw
            _input_tiles(x[a:b], pads[0], pads[2], th, tw, v)
            _gradient_tiles(dz[a:b], th, tw, dm)
            np.matmul(v[:, :t].transpose(0, 2, 1), dm[:, :t], out=tmp)
            du += tmp
        return du

    parts = run_chunks(n, part)
    du = parts[0]
    for p in parts[1:]:
        du += p
    # dw[i, j] = sum_ab G[a, i] G[b, j] du[a, b]
    dw = GG.T @ du.reshape(36, -1).astype(np.float64)
    return dw.astype(x.dtype).reshape(3, 3, c, f)
