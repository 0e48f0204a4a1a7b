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
(F(2x2, 3x3): 3e-7); the tests hold it to 1e-4. conv_algorithm.uses_winograd says which layers use it.

Layout: the transformed tiles are stored (36, T + 7, C): with T x C a power of two the 36 write
streams would fall on the same cache sets (a probe of F(2x2, 3x3): 24 ms against 4 ms).
The transforms are two passes per tile (rows, then columns), each a loop over channels on
contiguous memory that LLVM vectorises (one pass with the 36 values in scalars ran 1.6x slower).
"""

import numpy as np
from numba import njit

from . import JIT
from .activation import activate, activation_grad
from .parallel import added_in_order, column_sums, run_chunks

TILES_PER_STEP = 256    # tiles per batch of 36 GEMMs (VGG layers, fwd + dw + dx: 128 tiles 39.4 ms, 256 38.8, 512 40.4, 1024 46.4)
SKEW = 7                # extra rows between the 36 planes of a buffer (see the docstring)
OUT = 4                 # outputs per tile side


# The transforms. Each loop below writes one row of channels and reads one array: LLVM vectorises
# such a loop over channels (a loop writing six rows from a function returning six values ran
# 2x slower: the vectoriser's alias checks between the rows). Inputs come padded, so that no tile
# needs edge tests.

@njit(inline="always")
def _bt_row(row, o, r, a, c_in):
    # r[a, j] = (B^T row[o:o + 6])[j]: one row of a tile through B (B^T on its transpose)
    two, four, five = row.dtype.type(2), row.dtype.type(4), row.dtype.type(5)
    for c in range(c_in):
        r[a, 0, c] = four * row[o, c] - five * row[o + 2, c] + row[o + 4, c]
    for c in range(c_in):
        r[a, 1, c] = row[o + 3, c] + row[o + 4, c] - four * (row[o + 1, c] + row[o + 2, c])
    for c in range(c_in):
        r[a, 2, c] = four * (row[o + 1, c] - row[o + 2, c]) + row[o + 4, c] - row[o + 3, c]
    for c in range(c_in):
        r[a, 3, c] = two * (row[o + 3, c] - row[o + 1, c]) + row[o + 4, c] - row[o + 2, c]
    for c in range(c_in):
        r[a, 4, c] = two * (row[o + 1, c] - row[o + 3, c]) + row[o + 4, c] - row[o + 2, c]
    for c in range(c_in):
        r[a, 5, c] = four * row[o + 1, c] - five * row[o + 3, c] + row[o + 5, c]


@njit(inline="always")
def _bt_col(r, b, v, t, c_in):
    # v[6 i + b, t] = (B^T r[:, b])[i]: one column of R = d B through B^T
    two, four, five = r.dtype.type(2), r.dtype.type(4), r.dtype.type(5)
    for c in range(c_in):
        v[b, t, c] = four * r[0, b, c] - five * r[2, b, c] + r[4, b, c]
    for c in range(c_in):
        v[6 + b, t, c] = r[3, b, c] + r[4, b, c] - four * (r[1, b, c] + r[2, b, c])
    for c in range(c_in):
        v[12 + b, t, c] = four * (r[1, b, c] - r[2, b, c]) + r[4, b, c] - r[3, b, c]
    for c in range(c_in):
        v[18 + b, t, c] = two * (r[3, b, c] - r[1, b, c]) + r[4, b, c] - r[2, b, c]
    for c in range(c_in):
        v[24 + b, t, c] = two * (r[1, b, c] - r[3, b, c]) + r[4, b, c] - r[2, b, c]
    for c in range(c_in):
        v[30 + b, t, c] = four * r[1, b, c] - five * r[3, b, c] + r[5, b, c]


@njit(**JIT)
def _input_tiles(xp, th, tw, v):
    # xp (n, 4 th + 2, 4 tw + 2, C), the input with its padding in place ->
    # v[6 a + b, t, c] = (B^T d B)[a, b] of tile t = (n, ti, tj), d = xp[n, 4 ti:4 ti + 6, 4 tj:4 tj + 6]
    n_img, _, _, c_in = xp.shape
    r = np.empty((6, 6, c_in), xp.dtype)
    for n in range(n_img):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                for a in range(6):
                    _bt_row(xp[n, 4 * ti + a], 4 * tj, r, a, c_in)
                for b in range(6):
                    _bt_col(r, b, v, t, c_in)


@njit(inline="always")
def _at_col(m, t, b, s, f_out):
    # s[i, b] = (A^T m[b + 6 (0..5), t])[i]: one column of a tile through A^T
    two, four, eight = m.dtype.type(2), m.dtype.type(4), m.dtype.type(8)
    for f in range(f_out):
        s[0, b, f] = m[b, t, f] + m[6 + b, t, f] + m[12 + b, t, f] + m[18 + b, t, f] + m[24 + b, t, f]
    for f in range(f_out):
        s[1, b, f] = m[6 + b, t, f] - m[12 + b, t, f] + two * (m[18 + b, t, f] - m[24 + b, t, f])
    for f in range(f_out):
        s[2, b, f] = m[6 + b, t, f] + m[12 + b, t, f] + four * (m[18 + b, t, f] + m[24 + b, t, f])
    for f in range(f_out):
        s[3, b, f] = m[6 + b, t, f] - m[12 + b, t, f] + eight * (m[18 + b, t, f] - m[24 + b, t, f]) + m[30 + b, t, f]


@njit(inline="always")
def _at_row(s, i, out, o, f_out):
    # out[o + j] = (s[i] A)[j]: one row of S = A^T m through A
    two, four, eight = s.dtype.type(2), s.dtype.type(4), s.dtype.type(8)
    for f in range(f_out):
        out[o, f] = s[i, 0, f] + s[i, 1, f] + s[i, 2, f] + s[i, 3, f] + s[i, 4, f]
    for f in range(f_out):
        out[o + 1, f] = s[i, 1, f] - s[i, 2, f] + two * (s[i, 3, f] - s[i, 4, f])
    for f in range(f_out):
        out[o + 2, f] = s[i, 1, f] + s[i, 2, f] + four * (s[i, 3, f] + s[i, 4, f])
    for f in range(f_out):
        out[o + 3, f] = s[i, 1, f] - s[i, 2, f] + eight * (s[i, 3, f] - s[i, 4, f]) + s[i, 5, f]


@njit(**JIT)
def _output_tiles(m, th, tw, y):
    # m[k, t, f] (36, T, F) -> y (n, OH, OW, F): the 4x4 block A^T m A of every tile; blocks
    # that cross the map's edge go through o and are cut
    n_img, oh, ow, f_out = y.shape
    s = np.empty((4, 6, f_out), y.dtype)
    o = np.empty((4, 4, f_out), y.dtype)
    for n in range(n_img):
        for ti in range(th):
            i0 = 4 * ti
            for tj in range(tw):
                j0 = 4 * tj
                t = (n * th + ti) * tw + tj
                for b in range(6):
                    _at_col(m, t, b, s, f_out)
                if i0 + 4 <= oh and j0 + 4 <= ow:
                    for i in range(4):
                        _at_row(s, i, y[n, i0 + i], j0, f_out)
                else:
                    for i in range(4):
                        _at_row(s, i, o[i], 0, f_out)
                    for a in range(min(4, oh - i0)):
                        for b in range(min(4, ow - j0)):
                            for f in range(f_out):   # a loop, not a slice: compiles in a fraction
                                y[n, i0 + a, j0 + b, f] = o[a, b, f]


@njit(inline="always")
def _a_col(g, i0, j0, j, s, f_out):
    # s[:, j] = A g[i0:i0 + 4, j0 + j]: one column of a 4x4 gradient block through A (6 from 4)
    two, four, eight = g.dtype.type(2), g.dtype.type(4), g.dtype.type(8)
    for f in range(f_out):
        s[0, j, f] = g[i0, j0 + j, f]
    for f in range(f_out):
        s[1, j, f] = g[i0, j0 + j, f] + g[i0 + 1, j0 + j, f] + g[i0 + 2, j0 + j, f] + g[i0 + 3, j0 + j, f]
    for f in range(f_out):
        s[2, j, f] = g[i0, j0 + j, f] - g[i0 + 1, j0 + j, f] + g[i0 + 2, j0 + j, f] - g[i0 + 3, j0 + j, f]
    for f in range(f_out):
        s[3, j, f] = (g[i0, j0 + j, f] + two * g[i0 + 1, j0 + j, f] + four * g[i0 + 2, j0 + j, f]
                      + eight * g[i0 + 3, j0 + j, f])
    for f in range(f_out):
        s[4, j, f] = (g[i0, j0 + j, f] - two * g[i0 + 1, j0 + j, f] + four * g[i0 + 2, j0 + j, f]
                      - eight * g[i0 + 3, j0 + j, f])
    for f in range(f_out):
        s[5, j, f] = g[i0 + 3, j0 + j, f]


@njit(inline="always")
def _a_row(s, a, dm, t, f_out):
    # dm[6 a + b, t] = (s[a] A^T)[b]
    two, four, eight = s.dtype.type(2), s.dtype.type(4), s.dtype.type(8)
    for f in range(f_out):
        dm[6 * a, t, f] = s[a, 0, f]
    for f in range(f_out):
        dm[6 * a + 1, t, f] = s[a, 0, f] + s[a, 1, f] + s[a, 2, f] + s[a, 3, f]
    for f in range(f_out):
        dm[6 * a + 2, t, f] = s[a, 0, f] - s[a, 1, f] + s[a, 2, f] - s[a, 3, f]
    for f in range(f_out):
        dm[6 * a + 3, t, f] = s[a, 0, f] + two * s[a, 1, f] + four * s[a, 2, f] + eight * s[a, 3, f]
    for f in range(f_out):
        dm[6 * a + 4, t, f] = s[a, 0, f] - two * s[a, 1, f] + four * s[a, 2, f] - eight * s[a, 3, f]
    for f in range(f_out):
        dm[6 * a + 5, t, f] = s[a, 3, f]


@njit(**JIT)
def _gradient_tiles(gp, th, tw, dm):
    # gp (n, 4 th, 4 tw, F), dz padded with zeros to whole tiles ->
    # dm[6 a + b, t, f] = (A dZ A^T)[a, b], dZ the 4x4 block of tile t: columns S = A dZ, then S A^T
    n_img, _, _, f_out = gp.shape
    s = np.empty((6, 4, f_out), gp.dtype)
    for n in range(n_img):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                for j in range(4):
                    _a_col(gp[n], 4 * ti, 4 * tj, j, s, f_out)
                for a in range(6):
                    _a_row(s, a, dm, t, f_out)


G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
GG = np.kron(G, G)      # (36, 9): U[6 a + b] = sum_ij G[a, i] G[b, j] g[3 i + j], one GEMM for all filters


TRANSFORM_COLUMNS = 1 << 14   # (c, f) pairs per float64 GEMM of the filter transforms: 4.7 MB of float64 tiles


def _transformed(m, a, rows, dtype):
    """m (R, K) @ a (K, M) in float64 -> (R, M) of dtype, TRANSFORM_COLUMNS columns of a at a time:
    the float64 copies stay a few MB where a whole 256 x 256 layer's are 19 MB."""
    out = np.empty((rows, a.shape[1]), dtype)
    for j in range(0, a.shape[1], TRANSFORM_COLUMNS):
        out[:, j:j + TRANSFORM_COLUMNS] = m @ a[:, j:j + TRANSFORM_COLUMNS].astype(np.float64)
    return out


def filter_tiles(w):
    """(3, 3, C, F) filters -> U (36, C, F) = G g G^T per (c, f), computed in float64 as GEMMs
    (np.tensordot twice took 2.8 ms for 128 x 128 filters, one GEMM 0.37)."""
    return _transformed(GG, w.reshape(9, -1), 36, w.dtype).reshape(36, w.shape[2], w.shape[3])


def turned_tiles(w):
    """U of the filters turned by 180 degrees, channels and filters swapped: the input gradient
    of a stride-1 3x3 convolution is the convolution of dz with these (winograd_backward)."""
    return filter_tiles(np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2)))


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
    each thread copies a few images at a time into a zero-bordered buffer, then runs them through
    the transforms and 36 single-threaded GEMMs."""
    y = np.empty((x.shape[0],) + tuple(out_hw) + (u.shape[2],), x.dtype)

    def part(lo, hi):
        _convolve_images(x[lo:hi], u, pads, y[lo:hi])
        activate(y[lo:hi], act, alpha, bias)

    run_chunks(x.shape[0], part)
    return y


def winograd_backward(dy, x, y, w, act, alpha, pads, need_dx=True, need_db=True, turned=None):
    """-> (dx or None, dw (3, 3, C, F), db (F,) or None) of y = act(conv3x3(x, w) + b), stride 1,
    in one pass over the threads: each takes its images' dz = dy act'(y), adds their share of dw
    and db, and convolves their dz into dx. Shares are summed in chunk order (bit-identical reruns
    for a given thread count). turned: turned_tiles(w), when the caller has it already."""
    f = w.shape[3]
    dy = np.ascontiguousarray(dy)
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    # dx is the convolution of dz with the filters turned, padded by 2 - p on each side
    if need_dx and turned is None:
        turned = turned_tiles(w)
    back_pads = tuple(2 - p for p in pads)

    def part(lo, hi):
        dz = np.ascontiguousarray(activation_grad(dy[lo:hi], y[lo:hi], act, alpha))
        du = _weight_grad_images(x[lo:hi], dz, pads)
        db = column_sums(dz.reshape(-1, f)) if need_db else None
        if need_dx:
            _convolve_images(dz, turned, back_pads, dx[lo:hi])
        return du, db

    du, db = added_in_order(run_chunks(len(x), part))
    return dx, _filter_grad(du), db


def _convolve_images(x, u, pads, y):
    """y[...] = conv3x3(x) with U = filter_tiles(w), on this thread, a few images at a time."""
    n, c, f = x.shape[0], x.shape[3], u.shape[2]
    th, tw = _tiles(y.shape[1:3])
    steps = _steps(0, n, th * tw)
    images = steps[0][1] - steps[0][0]
    xp = _padded(x, images, th, tw)
    v, m = _buffer(images, th * tw, c, x.dtype), _buffer(images, th * tw, f, x.dtype)
    for a, b in steps:
        t = (b - a) * th * tw
        _input_tiles(_fill(xp, x, a, b, pads), th, tw, v)
        np.matmul(v[:, :t], u, out=m[:, :t])
        _output_tiles(m, th, tw, y[a:b])


def _weight_grad_images(x, dz, pads):
    """-> dU (36, C, F) = sum over the tiles of images x, dz of V^T dM, on this thread."""
    n, c = x.shape[0], x.shape[3]
    oh, ow, f = dz.shape[1:]
    th, tw = _tiles((oh, ow))
    steps = _steps(0, n, th * tw)
    images = steps[0][1] - steps[0][0]
    xp = _padded(x, images, th, tw)
    whole = oh == 4 * th and ow == 4 * tw         # else dz goes through a zero-bordered buffer
    gp = None if whole else np.zeros((images, 4 * th, 4 * tw, f), x.dtype)
    v, dm = _buffer(images, th * tw, c, x.dtype), _buffer(images, th * tw, f, x.dtype)
    du, tmp = np.empty((36, c, f), x.dtype), None   # the first step writes du, later ones add
    for a, b in steps:
        t = (b - a) * th * tw
        _input_tiles(_fill(xp, x, a, b, pads), th, tw, v)
        _gradient_tiles(dz[a:b] if whole else _fill(gp, dz, a, b, (0, 0, 0, 0)), th, tw, dm)
        if a == steps[0][0]:
            np.matmul(v[:, :t].transpose(0, 2, 1), dm[:, :t], out=du)
            continue
        tmp = np.empty((36, c, f), x.dtype) if tmp is None else tmp
        np.matmul(v[:, :t].transpose(0, 2, 1), dm[:, :t], out=tmp)
        du += tmp
    return du


def _filter_grad(du):
    """dU (36, C, F) -> dw (3, 3, C, F) = G^T dU G per (c, f), in float64."""
    c, f = du.shape[1:]
    return _transformed(GG.T, du.reshape(36, -1), 9, du.dtype).reshape(3, 3, c, f)


def _padded(x, images, th, tw):
    """A zero buffer for `images` images of x and the padding of whole tiles: (images, 4 th + 2,
    4 tw + 2, C). _fill writes x's rows from pads[0] and columns from pads[2]; the rest stays zero."""
    return np.zeros((images, 4 * th + 2, 4 * tw + 2, x.shape[3]), x.dtype)


def _fill(xp, x, a, b, pads):
    """Images a..b of x into the padded buffer -> the buffer's first b - a images."""
    h, w = x.shape[1:3]
    xp[:b - a, pads[0]:pads[0] + h, pads[2]:pads[2] + w] = x[a:b]
    return xp[:b - a]
