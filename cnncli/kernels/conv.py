"""Convolution as cross-correlation (no kernel flip), NHWC, via im2col / col2im, or directly.

Forward:  cols = im2col(x)            (rows, FH*FW*C), column order (kh, kw, c)
          y    = cols @ W             W: (FH*FW*C, F)      -> (N, OH, OW, F)
Backward: dW   = cols.T @ dy,  dcols = dy @ W.T,  dx = col2im(dcols)
The njit kernels work on any run of images; the wrappers feed them a few images at a time.
Layers of many channels read padding implicitly (cells outside the input read as zero); thin
ones (1-3 channels, conv_algorithm.planar_columns) copy their images into zero-padded planes, and at
stride 1 with at most conv_algorithm.DIRECT_MAX_FILTERS filters they build no columns at all: the
forward is a sum of shifted runs of those planes and dW a dot product of them with dz
(direct.py: _direct_wide, _direct_dw).
"""

import numpy as np
from numba import njit

from ..conv_algorithm import keeps_columns, plan as conv_plan
from . import JIT
from .activation import activate, activation_grad
from .direct import _direct_dw, _direct_forward
from .parallel import added_in_order, column_sums, run_chunks


@njit(**JIT)
def _im2col(x, fh, fw, sh, sw, pt, pl, oh, ow, cols):
    # Row (n, i, j) of cols holds the window at (i, j): for each kh, the FW * C values of input
    # row ih from column j sw - pl on, one contiguous run when the window is inside the row
    # (LeNet-5's second layer, 32 images, one thread: 69 us against 137 with a loop per kw and
    # channel; col2im below 73 against 149).
    n_img, h, w, c = x.shape
    zero = x.dtype.type(0)
    run = fw * c
    xf = x.reshape(n_img, h, w * c)      # x C-contiguous: each row of the image one run
    for n in range(n_img):
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                iw0 = j * sw - pl
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    dst = cols[row, kh * run:(kh + 1) * run]
                    if ih < 0 or ih >= h:
                        dst[:] = zero
                    elif iw0 >= 0 and iw0 + fw <= w:
                        src = xf[n, ih, iw0 * c:iw0 * c + run]
                        for t in range(run):
                            dst[t] = src[t]
                    else:
                        for kw in range(fw):
                            iw = iw0 + kw
                            for ci in range(c):
                                dst[kw * c + ci] = x[n, ih, iw, ci] if 0 <= iw < w else zero


@njit(**JIT)
def _im2col_planar_t(xp, fh, fw, sh, sw, pt, pl, oh, ow, cols_t, col0):
    # For few input channels, build the columns transposed, (FH*FW*C, rows), from planar
    # images xp (N, C, H, W): each row of cols_t is one channel plane shifted by one kernel cell,
    # copied as contiguous runs (slice copies: 2x faster than an index loop). The GEMM reads it
    # as cols_t.T at no cost. LeNet-5's first layer, 32 images, one thread: 2.1 ms with the
    # general kernel, 0.4 ms this way.
    n_img, c, h, w = xp.shape
    zero = xp.dtype.type(0)
    for kh in range(fh):
        for kw in range(fw):
            j_lo = min(max(-((kw - pl) // sw), 0), ow)   # first j with j*sw - pl + kw >= 0
            j_hi = min(max((w - 1 - kw + pl) // sw + 1, j_lo), ow)
            off = kw - pl
            for ci in range(c):
                k = (kh * fw + kw) * c + ci
                for n in range(n_img):
                    for i in range(oh):
                        m0 = col0 + (n * oh + i) * ow
                        ih = i * sh - pt + kh
                        if ih < 0 or ih >= h:
                            cols_t[k, m0:m0 + ow] = zero
                            continue
                        cols_t[k, m0:m0 + j_lo] = zero
                        if sw == 1:
                            cols_t[k, m0 + j_lo:m0 + j_hi] = xp[n, ci, ih, j_lo + off:j_hi + off]
                        else:
                            for j in range(j_lo, j_hi):
                                cols_t[k, m0 + j] = xp[n, ci, ih, j * sw + off]
                        cols_t[k, m0 + j_hi:m0 + ow] = zero


@njit(**JIT)
def _im2col_wide_t(xpad, c, fh, fw, wp, pc, cols_t, col0):
    # Stride 1, few channels: xpad (N, C, Hp * Wp + fw) holds each padded plane flat (with fw
    # spare zeros at the end). Column row k = (kh, kw, c) of image n is one contiguous run:
    # cols_t[k, col0 + n pc + q] = xpad[n, c, kh Wp + kw + q], q < pc = OH * Wp, every padded
    # column j of each output row (j >= OW gives outputs that are dropped). LeNet-5's first layer,
    # 32 images, one thread, columns + GEMM: 0.61 ms with _im2col_planar_t, 0.43 this way.
    n_img = xpad.shape[0]
    for kh in range(fh):
        for kw in range(fw):
            off = kh * wp + kw
            for ci in range(c):
                k = (kh * fw + kw) * c + ci
                for n in range(n_img):
                    cols_t[k, col0 + n * pc:col0 + (n + 1) * pc] = xpad[n, ci, off:off + pc]


@njit(**JIT)
def _col2im(dcols, fh, fw, sh, sw, pt, pl, oh, ow, dx):
    # dx[n, ih, iw, c] += every column entry that _im2col took from there, in the same order as a
    # loop per kw and channel (so the same sums), a contiguous run of FW * C where the window is
    # inside the row
    n_img, h, w, c = dx.shape
    run = fw * c
    dxf = dx.reshape(n_img, h, w * c)    # dx C-contiguous
    for n in range(n_img):
        dx[n] = 0
        for i in range(oh):
            for j in range(ow):
                row = (n * oh + i) * ow + j
                iw0 = j * sw - pl
                for kh in range(fh):
                    ih = i * sh - pt + kh
                    if ih < 0 or ih >= h:
                        continue
                    src = dcols[row, kh * run:(kh + 1) * run]
                    if iw0 >= 0 and iw0 + fw <= w:
                        dst = dxf[n, ih, iw0 * c:iw0 * c + run]
                        for t in range(run):
                            dst[t] += src[t]
                    else:
                        for kw in range(fw):
                            iw = iw0 + kw
                            if 0 <= iw < w:
                                for ci in range(c):
                                    dx[n, ih, iw, ci] += src[kw * c + ci]


ROWS_PER_STEP = 2048  # output positions per GEMM (1x1 layers: input rows a run): a cache-sized column
# buffer (~1-2 MB) ...
STEP_BYTES = 4 << 20  # ... and at most this many bytes of columns (a deep layer's 2,048 rows of
# 3x3x512 are 38 MB, and backward holds dz w^T beside them: ResNet-18 at 224 peaked +128 MB in
# its last stage; the 28-32 pixel networks' layers, at most 512 deep, are unchanged)
# First layers (1 or 3 channels) build their columns transposed, from planar images. Measured,
# 32 images, one thread, im2col ms planar / by rows: 28x28x1 5x5 0.41 / 1.19; 32x32x3 3x3
# 0.57 / 0.81; but 14x14x6 5x5 0.61 / 0.26 and 16x16x8 3x3 0.56 / 0.17 (short rows lose).
# At stride 1 they are "wide" (_im2col_wide_t; conv_algorithm.column_positions).


class _Geometry:
    """Shapes of one convolution, and the im2col of a run of images into a buffer."""

    def __init__(self, x_shape, w_shape, stride, pads, out_hw, wide=True, plan=None):
        """plan: the layer's ConvPlan (conv_algorithm.plan, made once when it was built); None
        (a kernel called on its own, a test): made here from the same rule."""
        self.n, self.h, self.w, self.c = x_shape
        self.fh, self.fw, _, self.f = w_shape
        self.sh, self.sw = stride
        self.pads, (self.oh, self.ow) = pads, out_hw
        self.p = self.oh * self.ow                 # output positions per image
        self.k = self.fh * self.fw * self.c        # GEMM depth
        plan = plan or conv_plan(self.c, (self.fh, self.fw), stride, pads, 1, self.f, (self.h, self.w), out_hw)
        self.identity = plan.pointwise
        # planar: _im2col_planar_t; wide: _im2col_wide_t (wide=False: position by position)
        self.planar, self.wide = plan.planar, wide and plan.wide
        self.hp, self.wp = self.h + pads[0] + pads[1], self.w + pads[2] + pads[3]
        # column rows per image: the plan's, the rule inspect's memory estimate uses
        self.pc = plan.positions if self.wide else self.p
        rows = min(ROWS_PER_STEP, STEP_BYTES // (4 * self.k))
        self.step = max(1, rows // self.pc)   # images per GEMM
        # no columns at all: _direct_wide forward, _direct_dw backward (dx still by col2im)
        self.direct = plan.direct
        self.f2 = self.f + self.f % 2   # the direct kernels take filters two by two

    def columns(self, x, a, b, buf, offset=0):
        """(b-a)*PC x K matrix of images a..b, written into buf from row `offset`
        (a view of x itself for 1x1 stride-1 convs; a transposed view for thin inputs)."""
        if self.identity:
            return x[a:b].reshape(-1, self.c)
        args = (self.fh, self.fw, self.sh, self.sw, self.pads[0], self.pads[2], self.oh, self.ow)
        if self.wide:
            _im2col_wide_t(self.padded_planes(x, a, b), self.c, self.fh, self.fw, self.wp, self.pc, buf, offset)
            return self.stored(buf, offset, b - a)
        if self.planar:  # (N, H, W, C) -> (N, C, H, W): a reshape for one channel, else a small copy
            xp = np.ascontiguousarray(x[a:b].transpose(0, 3, 1, 2))
            _im2col_planar_t(xp, *args, buf, offset)
            return self.stored(buf, offset, b - a)
        cols = self.stored(buf, offset, b - a)
        _im2col(np.ascontiguousarray(x[a:b]), *args, cols)     # reads rows as runs: C order
        return cols

    def padded_planes(self, x, a, b):
        """Images a..b of x as padded planes, each flat with fw spare zeros at its end:
        (b - a, C, Hp * Wp + FW), as _im2col_wide_t and _direct_wide read them."""
        xpad = np.zeros((b - a, self.c, self.hp * self.wp + self.fw), x.dtype)
        planes = xpad[:, :, :self.hp * self.wp].reshape(b - a, self.c, self.hp, self.wp)
        planes[:, :, self.pads[0]:self.pads[0] + self.h, self.pads[2]:self.pads[2] + self.w] = \
            x[a:b].transpose(0, 3, 1, 2)
        return xpad

    def stored(self, buf, offset, images):
        """The (rows, K) columns of `images` images kept in buf from row `offset`."""
        rows = images * self.pc
        return buf[:, offset:offset + rows].T if self.planar else buf[offset:offset + rows]

    def buffer(self, dtype, images=None):
        if self.identity:
            return None
        rows = (images or self.step) * self.pc
        return np.empty((self.k, rows) if self.planar else (rows, self.k), dtype)

    def keeps_columns(self, dtype):
        """Small layers keep all columns from forward to backward; big ones recompute them."""
        return keeps_columns(self.n, self.pc, self.k, self.identity, np.dtype(dtype).itemsize)

    def wide_rows(self, z, images):
        """z (images, OH, OW, F) -> (images * OH * Wp, F) with zeros at the dropped columns: the
        rows of wide columns (for dw = cols^T dz)."""
        out = np.zeros((images, self.oh, self.wp, z.shape[-1]), z.dtype)
        out[:, :, :self.ow] = z.reshape(images, self.oh, self.ow, -1)
        return out.reshape(-1, z.shape[-1])


def im2col(x, fh, fw, stride, pads, out_hw):
    """(N, H, W, C) -> (N*OH*OW, FH*FW*C), all images at once (for tests and inspection)."""
    g = _Geometry(x.shape, (fh, fw, x.shape[3], 1), stride, pads, out_hw, wide=False)
    return np.ascontiguousarray(g.columns(np.ascontiguousarray(x), 0, g.n, g.buffer(x.dtype, g.n)))


def conv2d_forward(x, w, bias, act, stride, pads, out_hw, alpha=0.01, workspace=None, may_keep=True, plan=None):
    """y = act(conv(x, w) + bias);  y[n,i,j,f] = sum_{kh,kw,c} x[n, i*sh-pt+kh, j*sw-pl+kw, c] w[kh,kw,c,f].

    x: (N, H, W, C) C-contiguous; w: (FH, FW, C, F); bias: (F,) or None
    -> (y (N, OH, OW, F), the batch's columns if small enough to keep for backward, else None).
    Images are split over threads; each thread im2cols a few images at a time into its own
    cache-sized buffer and multiplies it by w in a single-threaded GEMM (1x1 layers: their input
    in runs of ROWS_PER_STEP rows), and applies bias and activation to each GEMM's output while
    it is still in the cache (kept columns: one GEMM, then the pass). `workspace`, the columns
    array this returned last time, is reused when it fits (a fresh one costs page faults).
    may_keep=False never keeps the columns (a grouped layer applies the size rule to all its groups).
    Thin layers convolve directly and keep nothing (conv_algorithm.convolves_directly): their backward
    needs no columns either. plan: the layer's ConvPlan (_Geometry).
    """
    g = _Geometry(x.shape, w.shape, stride, pads, out_hw, plan=plan)
    y = np.empty((g.n, g.oh, g.ow, g.f), x.dtype)
    if g.direct:
        _direct_forward(x, w, bias, act, alpha, g, y)
        return y, None
    keep = may_keep and g.keeps_columns(x.dtype)
    w2 = w.reshape(g.k, g.f)
    y2 = y.reshape(g.n * g.p, g.f)
    kept = None
    if keep:
        shape = (g.k, g.n * g.pc) if g.planar else (g.n * g.pc, g.k)
        fits = workspace is not None and workspace.shape == shape and workspace.dtype == x.dtype
        kept = workspace if fits else g.buffer(x.dtype, g.n)

    step = g.n if kept is not None else g.step  # kept columns: one GEMM per thread, fewer calls

    x2 = np.ascontiguousarray(x).reshape(-1, g.c) if g.identity else None

    def part(lo, hi):
        if g.identity:   # 1x1: the input is the columns; GEMMs over runs of rows, not whole images
            for a in range(lo * g.p, hi * g.p, ROWS_PER_STEP):
                b = min(a + ROWS_PER_STEP, hi * g.p)
                np.matmul(x2[a:b], w2, out=y2[a:b])
                activate(y2[a:b], act, alpha, bias)     # while the GEMM's output is in the cache
            return
        buf = g.buffer(x.dtype) if kept is None else kept
        wide = np.empty((min(step, hi - lo) * g.pc, g.f), x.dtype) if g.wide else None
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            cols = g.columns(x, a, b, buf, 0 if kept is None else a * g.pc)
            if g.wide:   # every padded column computed; the valid ones copied out
                out = wide[:(b - a) * g.pc]
                np.matmul(cols, w2, out=out)
                y[a:b] = out.reshape(b - a, g.oh, g.wp, g.f)[:, :, :g.ow]
            else:
                np.matmul(cols, w2, out=y2[a * g.p:b * g.p])
            if kept is None:
                activate(y[a:b], act, alpha, bias)      # while the GEMM's output is in the cache
        if kept is not None:
            activate(y[lo:hi], act, alpha, bias)

    run_chunks(g.n, part)
    return y, kept


def conv2d_backward(dy, x, y, w, act, stride, pads, out_hw, need_dx=True, alpha=0.01, kept=None, plan=None,
                    need_db=True):
    """-> (dx or None, dw like w, db (F,) or None) for conv2d_forward, given its input x and output y.

    dz = dy * act'(y);  dw = cols^T dz;  db = sum dz;  dx = col2im(dz w^T). y: what the activation
    keeps (kernels/activation.py): a layer whose function keeps its input passes dz and "linear".
    `kept` are the forward pass's columns when it kept them; otherwise they are recomputed per
    chunk (cheaper in memory than keeping a big layer's columns, and the recompute hits the cache).
    Thin layers (no columns: _Geometry.direct) take dw by _direct_dw from the padded planes;
    1x1 layers go by _pointwise_backward. need_db=False (a layer without a bias): db is None, its
    column sums of dz never taken.
    """
    g = _Geometry(x.shape, w.shape, stride, pads, out_hw, plan=plan)
    w2 = w.reshape(g.k, g.f)
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    if g.identity:
        return _pointwise_backward(dy, x, y, w2, act, alpha, dx, g, w.shape, need_db)
    dy = np.ascontiguousarray(dy)

    # kept columns: one GEMM per thread; a direct layer without dx: one _direct_dw call per
    # thread (with dx, steps of g.step images bound dz @ w^T, as for recomputed columns)
    step = g.n if kept is not None or (g.direct and not need_dx) else g.step

    def part(lo, hi):
        buf = g.buffer(x.dtype) if kept is None and not g.direct else None
        dw, db = np.zeros((g.k, g.f), x.dtype), np.zeros(g.f, x.dtype) if need_db else None
        if g.direct:
            dwt, dzp = np.zeros((g.f2, g.c, g.fh, g.fw), x.dtype), np.empty((g.f2, g.oh * g.wp), x.dtype)
        else:
            tmp = np.empty((g.k, g.f), x.dtype)
        for a in range(lo, hi, step):
            b = min(a + step, hi)
            dz = activation_grad(dy[a:b], y[a:b], act, alpha).reshape(-1, g.f)
            if g.direct:
                _direct_dw(g.padded_planes(x, a, b), dz.reshape(b - a, g.oh, g.ow, g.f), g.wp, dzp, dwt)
            else:
                cols = g.stored(kept, a * g.pc, b - a) if kept is not None else g.columns(x, a, b, buf)
                np.matmul(cols.T, g.wide_rows(dz, b - a) if g.wide else dz, out=tmp)
                dw += tmp
            if need_db:
                db += column_sums(dz)
            if need_dx:
                _col2im(dz @ w2.T, g.fh, g.fw, g.sh, g.sw, g.pads[0], g.pads[2], g.oh, g.ow, dx[a:b])
        if g.direct:
            dw += dwt[:g.f].transpose(2, 3, 1, 0).reshape(g.k, g.f)
        return dw, db

    dw, db = added_in_order(run_chunks(g.n, part))
    return dx, dw.reshape(w.shape), db


def _pointwise_backward(dy, x, y, w2, act, alpha, dx, g, w_shape, need_db=True):
    """conv2d_backward of a 1x1 stride-1 layer, whose columns are its input: runs of
    ROWS_PER_STEP rows, each read from memory once for its four uses (dz, dw, db, dx written in
    place), the threads' dw and db added in chunk order. MobileNetV2's 112x112 16 -> 96 layer,
    batch 16, 2 threads: 32.7-38.8 ms with whole images -> 26.1-27.9 (docs/performance.md, session
    13). A run of a deep layer (a thousand channels) is 8 MB, past L2: measured within noise."""
    rows = getattr(dy, "rows", None)    # a batchnorm's RowGradient (linear layer): its rows a run at a time
    x2 = np.ascontiguousarray(x).reshape(-1, g.c)
    dy2 = None if rows else np.ascontiguousarray(dy).reshape(-1, g.f)
    y2 = np.ascontiguousarray(y).reshape(-1, g.f)
    dx2 = None if dx is None else dx.reshape(-1, g.c)

    def part(lo, hi):
        dw, tmp = np.zeros((g.k, g.f), x.dtype), np.empty((g.k, g.f), x.dtype)
        db = np.zeros(g.f, x.dtype) if need_db else None
        for a in range(lo * g.p, hi * g.p, ROWS_PER_STEP):
            b = min(a + ROWS_PER_STEP, hi * g.p)
            dz = rows(a, b) if rows else activation_grad(dy2[a:b], y2[a:b], act, alpha)
            np.matmul(x2[a:b].T, dz, out=tmp)
            dw += tmp
            if need_db:
                db += column_sums(dz)
            if dx2 is not None:
                np.matmul(dz, w2.T, out=dx2[a:b])
        return dw, db

    dw, db = added_in_order(run_chunks(g.n, part))
    return dx, dw.reshape(w_shape), db


# --- grouped convolution, 1 < groups < C (groups == C has its own kernels: depthwise.py) ---------

def _group_slices(c, f, groups):
    """[(input channels, filters)] of each group: filters [k F/g, (k+1) F/g) see channels [k C/g, (k+1) C/g)."""
    cg, fg = c // groups, f // groups
    return [(slice(k * cg, (k + 1) * cg), slice(k * fg, (k + 1) * fg)) for k in range(groups)]


def grouped_conv2d_forward(x, w, bias, act, stride, pads, out_hw, groups, alpha=0.01, workspace=None, keep=True,
                           plan=None):
    """y = act(grouped conv(x, w) + bias): conv2d_forward on each group's channels and filters.

    x: (N, H, W, C); w: (FH, FW, C/g, F); bias: (F,) or None
    -> (y (N, OH, OW, F), a list of each group's kept columns, or None).
    Each group runs on contiguous copies of its channels and filters (threads split its images);
    the bias and activation (softmax spans all groups) come last, over the whole output.
    The groups' columns together are as big as an ordinary conv's, so the same size rule decides;
    keep=False (inference) never keeps them. plan: the layer's ConvPlan, whose columns are a group's.
    """
    n, _, _, c = x.shape
    fh, fw, cg, f = w.shape
    assert cg * groups == c and f % groups == 0, (x.shape, w.shape, groups)
    plan = plan or conv_plan(c, (fh, fw), stride, pads, groups, f, x.shape[1:3], out_hw)
    may_keep = keep and keeps_columns(n, plan.positions, fh * fw * c, plan.pointwise, x.dtype.itemsize)
    y = np.empty((n,) + tuple(out_hw) + (f,), x.dtype)
    kept = []
    for k, (cs, fs) in enumerate(_group_slices(c, f, groups)):
        xg, wg = np.ascontiguousarray(x[..., cs]), np.ascontiguousarray(w[..., fs])
        yg, cols = conv2d_forward(xg, wg, None, "linear", stride, pads, out_hw, alpha,
                                  workspace[k] if workspace else None, may_keep, plan)
        y[..., fs] = yg
        kept.append(cols)
    run_chunks(n, lambda lo, hi: activate(y[lo:hi], act, alpha, bias))
    return y, (kept if any(cols is not None for cols in kept) else None)


def grouped_conv2d_backward(dy, x, y, w, act, stride, pads, out_hw, groups, need_dx=True, alpha=0.01,
                            kept=None, plan=None):
    """-> (dx or None, dw like w, db (F,)) for grouped_conv2d_forward: conv2d_backward per group
    on dz = dy * act'(y), with the forward's kept columns of each group when it kept them."""
    c, f = x.shape[3], w.shape[3]
    dz = activation_grad(dy, y, act, alpha)
    dx = np.empty(x.shape, x.dtype) if need_dx else None
    dw, db = np.empty_like(w), np.empty(f, x.dtype)
    for k, (cs, fs) in enumerate(_group_slices(c, f, groups)):
        xg, wg = np.ascontiguousarray(x[..., cs]), np.ascontiguousarray(w[..., fs])
        dzg = np.ascontiguousarray(dz[..., fs])
        # dzg stands in for y: a linear activation never reads it
        dxg, dwg, dbg = conv2d_backward(dzg, xg, dzg, wg, "linear", stride, pads, out_hw, need_dx, alpha,
                                        kept[k] if kept else None, plan)
        if need_dx:
            dx[..., cs] = dxg
        dw[..., fs], db[fs] = dwg, dbg
    return dx, dw, db
