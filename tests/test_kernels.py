"""Each fast kernel against its slow twin in tests/naive.py, on awkward shapes."""

import numpy as np
import pytest

from cnncli import conv_algorithm
from cnncli.kernels import activation as act_k
from cnncli.kernels import conv as conv_k
from cnncli.kernels import depthwise as dw_k
from cnncli.kernels import direct as direct_k
from cnncli.kernels import pool as pool_k
from cnncli.layers.base import resolve_padding
from cnncli.model import build_layer

from . import naive
from .conftest import nchw

# (N, H, W, C, F, size, stride, padding): stride 1/2/3, filters that do not fit evenly,
# 'same' with even filters, 1x1 and non-square kernels, batch of 1, one channel and many.
CONV_CASES = [
    (2, 7, 7, 3, 4, (3, 3), (1, 1), "valid"),
    (2, 7, 7, 3, 4, (3, 3), (1, 1), "same"),
    (1, 8, 9, 1, 2, (4, 4), (1, 1), "same"),        # even filter, 'same': extra pad bottom/right
    (3, 9, 8, 2, 5, (2, 3), (2, 2), "valid"),       # non-square, does not fit evenly
    (2, 10, 11, 4, 3, (3, 3), (3, 3), "same"),      # stride 3
    (2, 10, 11, 4, 3, (5, 2), (3, 2), (1, 2)),      # explicit zero padding, non-square
    (2, 6, 6, 16, 8, (1, 1), (1, 1), "valid"),      # 1x1: the im2col shortcut
    (2, 6, 7, 5, 8, (1, 1), (2, 2), "valid"),       # 1x1 with stride
    (1, 5, 5, 1, 1, (5, 5), (1, 1), "valid"),       # filter covers the whole image -> 1x1
    (4, 12, 12, 32, 16, (3, 3), (2, 1), 1),
    (9, 24, 24, 2, 3, (3, 3), (1, 1), "same"),      # several GEMM steps per thread chunk
    (5, 10, 9, 1, 4, (3, 3), (2, 1), "same"),       # one channel: columns built transposed
    (3, 40, 40, 1, 2, (5, 5), (1, 1), 2),           # one channel, several steps per chunk
    (2, 9, 8, 3, 20, (3, 3), (1, 1), "same"),       # thin, stride 1, > 16 filters: wide columns + GEMM
    (3, 9, 10, 2, 5, (7, 7), (1, 1), "same"),       # direct: 7 wide (taps 5 + 2), an odd filter count
]


def _conv_setup(rng, case, dtype):
    n, h, w, c, f, size, stride, padding = case
    pad_arg = padding if isinstance(padding, str) else ((padding, padding) if isinstance(padding, int) else padding)
    pads, out_hw = resolve_padding(pad_arg, (h, w), size, stride)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = rng.standard_normal((f, c) + size).astype(dtype)   # boundary layout
    return x, wt, pads, out_hw, stride


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_matches_naive(rng, case, dtype):
    x, wt, pads, out_hw, stride = _conv_setup(rng, case, dtype)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = conv_k.conv2d_forward(x, w_int, None, "linear", stride, pads, out_hw)
    ref = naive.conv2d(nchw(x).astype(np.float64), wt.astype(np.float64), None, stride, pads)
    assert y.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(nchw(y), ref, rtol=tol, atol=tol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    rdx, rdw, rdb = naive.conv2d_backward(nchw(x).astype(np.float64), wt.astype(np.float64),
                                          nchw(dy).astype(np.float64), stride, pads)
    for cols in (kept, None):   # with the forward's kept columns, and recomputing them
        dx, dw, db = conv_k.conv2d_backward(dy, x, y, w_int, "linear", stride, pads, out_hw, kept=cols)
        assert dx.dtype == dw.dtype == dtype
        np.testing.assert_allclose(nchw(dx), rdx, rtol=tol, atol=tol)
        np.testing.assert_allclose(dw.transpose(3, 2, 0, 1), rdw, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, rdb, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_backward_without_db_gives_the_same_dx_and_dw(rng, case):
    """need_db=False (a conv without a bias) leaves out db only: dx and dw keep their bits, on
    every path (1x1, im2col by rows and transposed, wide, direct)."""
    x, wt, pads, out_hw, stride = _conv_setup(rng, case, np.float32)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = conv_k.conv2d_forward(x, w_int, None, "relu", stride, pads, out_hw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = conv_k.conv2d_backward(dy, x, y, w_int, "relu", stride, pads, out_hw, kept=kept)
    dx2, dw2, none = conv_k.conv2d_backward(dy, x, y, w_int, "relu", stride, pads, out_hw, kept=kept, need_db=False)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)
    assert none is None and db.shape == (wt.shape[0],)


def test_conv_is_cross_correlation_not_convolution():
    # One window over a 3x3 image: cross-correlation sums x * k = 0*0 + 1*1 + ... + 8*8 = 204;
    # a flipped kernel (true convolution) would give sum i * (8 - i) = 84.
    x = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
    y, _ = conv_k.conv2d_forward(x, w, None, "linear", (1, 1), (0, 0, 0, 0), (1, 1))
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 204.0


# (N, H, W, C, F, groups, size, stride, padding). groups == C: the depthwise kernels (F = C*m);
# 1 < groups < C: im2col per group (C/g <= 3 builds its columns transposed, C/g > 3 by rows).
GROUPED_CASES = [
    (2, 7, 7, 4, 4, 4, (3, 3), (1, 1), "same"),       # depthwise, multiplier 1
    (3, 9, 8, 3, 6, 3, (3, 3), (2, 2), "same"),       # depthwise, multiplier 2, stride 2
    (2, 7, 9, 5, 10, 5, (3, 2), (1, 2), "valid"),     # odd sizes, non-square filter and stride
    (2, 10, 11, 6, 6, 6, (5, 5), (2, 2), (1, 2)),     # explicit zero padding, stride 2
    (2, 8, 9, 2, 4, 2, (4, 4), (1, 1), "same"),       # even filter, 'same': extra pad bottom/right
    (1, 5, 5, 2, 2, 2, (5, 5), (1, 1), "valid"),      # one window covers the image
    (3, 6, 7, 1, 2, 1, (3, 3), (2, 1), "same"),       # one channel, multiplier 2 (the kernel itself)
    (2, 6, 6, 1, 1, 1, (3, 3), (1, 1), 1),            # one channel, one filter
    (2, 6, 5, 8, 16, 8, (1, 1), (1, 1), "valid"),     # 1x1 depthwise: a per-channel scale
    (2, 7, 7, 4, 6, 2, (3, 3), (1, 1), "same"),       # grouped, 2 channels per group
    (3, 9, 8, 8, 4, 2, (3, 3), (2, 2), "valid"),      # grouped, 4 channels per group, stride 2
    (2, 10, 11, 12, 6, 3, (3, 2), (2, 1), (1, 2)),    # grouped, explicit padding, non-square
    (2, 7, 6, 6, 12, 3, (4, 4), (1, 1), "same"),      # grouped, even filter
    (2, 6, 6, 8, 8, 4, (1, 1), (1, 1), "valid"),      # grouped 1x1: the columns are the input
    (2, 6, 7, 12, 8, 4, (1, 1), (2, 2), "valid"),     # grouped 1x1 with stride
    (9, 24, 24, 8, 8, 2, (3, 3), (1, 1), "same"),     # several GEMM steps per thread chunk
    (2, 9, 10, 3, 6, 3, (5, 5), (1, 1), "same"),      # depthwise 5x5, multiplier 2: inner windows summed in registers
    (2, 9, 11, 16, 16, 16, (3, 3), (2, 2), "valid"),  # depthwise 3x3, a whole vector of channels, stride 2
]


def _grouped_forward(x, w_int, bias, act, stride, pads, out_hw, groups):
    """-> (y, kept columns) through the kernels the Conv layer picks for these groups."""
    if groups == x.shape[3]:
        return dw_k.depthwise_forward(x, w_int, bias, act, stride, pads, out_hw, 0.1), None
    return conv_k.grouped_conv2d_forward(x, w_int, bias, act, stride, pads, out_hw, groups, 0.1)


def _grouped_backward(dy, x, y, w_int, act, stride, pads, out_hw, groups, kept):
    if groups == x.shape[3]:
        return dw_k.depthwise_backward(dy, x, y, w_int, act, stride, pads, True, 0.1)
    return conv_k.grouped_conv2d_backward(dy, x, y, w_int, act, stride, pads, out_hw, groups, True, 0.1, kept)


@pytest.mark.parametrize("case", GROUPED_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grouped_and_depthwise_conv_match_naive(rng, case, dtype):
    n, h, w, c, f, groups, size, stride, padding = case
    x, _, pads, out_hw, stride = _conv_setup(rng, (n, h, w, c, f, size, stride, padding), dtype)
    wt = rng.standard_normal((f, c // groups) + size).astype(dtype)   # boundary layout (F, C/g, FH, FW)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = _grouped_forward(x, w_int, None, "linear", stride, pads, out_hw, groups)
    ref = naive.conv2d(nchw(x).astype(np.float64), wt.astype(np.float64), None, stride, pads, groups)
    assert y.dtype == dtype and y.shape == (n,) + out_hw + (f,)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(nchw(y), ref, rtol=tol, atol=tol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    rdx, rdw, rdb = naive.conv2d_backward(nchw(x).astype(np.float64), wt.astype(np.float64),
                                          nchw(dy).astype(np.float64), stride, pads, groups)
    for cols in (kept, None):   # with the forward's kept columns, and recomputing them
        dx, dw, db = _grouped_backward(dy, x, y, w_int, "linear", stride, pads, out_hw, groups, cols)
        assert dx.dtype == dw.dtype == db.dtype == dtype and dw.shape == w_int.shape
        np.testing.assert_allclose(nchw(dx), rdx, rtol=tol, atol=tol)
        np.testing.assert_allclose(dw.transpose(3, 2, 0, 1), rdw, rtol=tol, atol=tol)
        np.testing.assert_allclose(db, rdb, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", [c for c in GROUPED_CASES if 1 < c[5] < c[3]], ids=str)
def test_grouped_conv_matches_naive_without_kept_columns(rng, case, monkeypatch):
    monkeypatch.setattr(conv_algorithm, "KEEP_COLUMNS_BYTES", 0)
    monkeypatch.setattr(conv_k, "ROWS_PER_STEP", 64)
    test_grouped_and_depthwise_conv_match_naive(rng, case, np.float32)


def test_a_deep_layer_builds_its_columns_in_steps_of_at_most_4_mb():
    """ROWS_PER_STEP (2,048) and STEP_BYTES (4 MB of float32): 7x7x512 3x3 (4,608 deep) takes
    4 images (196 rows, 3.6 MB) a step, not 41 (38 MB); a 32x32x32 3x3 layer (288 deep) 2 images,
    as before; a 112x112 output takes one image however deep."""
    g = conv_k._Geometry((16, 7, 7, 512), (3, 3, 512, 512), (1, 1), (1, 1, 1, 1), (7, 7))
    assert g.step == 4 and g.buffer(np.float32).nbytes == 196 * 4608 * 4
    assert conv_k._Geometry((64, 32, 32, 32), (3, 3, 32, 32), (1, 1), (1, 1, 1, 1), (32, 32)).step == 2
    assert conv_k._Geometry((16, 224, 224, 3), (7, 7, 3, 64), (2, 2), (3, 3, 3, 3), (112, 112)).step == 1


@pytest.mark.parametrize("fn", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("groups", [2, 6])
def test_grouped_and_depthwise_fuse_bias_and_activation(rng, fn, groups):
    # y = act(conv + b) over all F channels (softmax spans the groups); dz = dy * act'(y)
    n, h, w, c, f = 2, 6, 5, 6, 12
    pads, out_hw = resolve_padding("same", (h, w), (3, 3), (2, 1))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((f, c // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = _grouped_forward(x, w_int, b, fn, (2, 1), pads, out_hw, groups)
    z = naive.conv2d(nchw(x).astype(np.float64), wt.astype(np.float64), b.astype(np.float64), (2, 1), pads, groups)
    want = naive.activation(np.moveaxis(z, 1, -1), fn, 0.1)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dz = act_k.activation_grad(dy, y, fn, 0.1)
    _, rdw, rdb = naive.conv2d_backward(nchw(x).astype(np.float64), wt.astype(np.float64),
                                        nchw(dz).astype(np.float64), (2, 1), pads, groups)
    _, dw, db = _grouped_backward(dy, x, y, w_int, fn, (2, 1), pads, out_hw, groups, kept)
    np.testing.assert_allclose(dw.transpose(3, 2, 0, 1), rdw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, rdb, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("fn", ["relu6", "leaky_relu", "softmax"])
@pytest.mark.parametrize("case", [(3, 9, 7, 5, 6, (1, 1), "valid"), (5, 8, 8, 4, 3, (3, 3), "same")], ids=str)
def test_conv_applies_bias_and_activation_step_by_step(rng, case, fn, threads, monkeypatch):
    """Without kept columns each GEMM's output is activated at once (while it is in the cache):
    1x1 layers in runs of ROWS_PER_STEP rows across image boundaries, others a few images a step.
    Forward and backward (dz = dy act'(y) per run, dx written per run) match the formula, with
    the images split over 1 to 3 threads (runs stop at a thread's share)."""
    from cnncli.kernels import parallel
    monkeypatch.setattr(parallel, "_n_threads", threads)
    monkeypatch.setattr(parallel, "_pool", None)
    monkeypatch.setattr(conv_algorithm, "KEEP_COLUMNS_BYTES", 0)
    monkeypatch.setattr(conv_k, "ROWS_PER_STEP", 40)     # 1x1: 63 rows an image, runs of 40
    n, h, w, c, f, size, padding = case
    pads, out_hw = resolve_padding(padding, (h, w), size, (1, 1))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    wt = rng.standard_normal((f, c) + size).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = conv_k.conv2d_forward(x, w_int, b, fn, (1, 1), pads, out_hw, 0.1)
    assert kept is None
    z = naive.conv2d(nchw(x).astype(np.float64), wt.astype(np.float64), b.astype(np.float64), (1, 1), pads)
    np.testing.assert_allclose(y, naive.activation(np.moveaxis(z, 1, -1), fn, 0.1), rtol=1e-4, atol=1e-5)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dz = act_k.activation_grad(dy, y, fn, 0.1)
    rdx, rdw, rdb = naive.conv2d_backward(nchw(x).astype(np.float64), wt.astype(np.float64),
                                          nchw(dz).astype(np.float64), (1, 1), pads)
    dx, dw, db = conv_k.conv2d_backward(dy, x, y, w_int, fn, (1, 1), pads, out_hw, True, 0.1)
    np.testing.assert_allclose(nchw(dx), rdx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw.transpose(3, 2, 0, 1), rdw, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, rdb, rtol=1e-4, atol=1e-4)
    no_dx, dw2, db2 = conv_k.conv2d_backward(dy, x, y, w_int, fn, (1, 1), pads, out_hw, False, 0.1)
    assert no_dx is None
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    if parallel._pool is not None:   # this test's own pool
        parallel._pool.shutdown()


@pytest.mark.parametrize("size,padding,hw", [((3, 3), "same", (9, 11)), ((5, 5), "same", (12, 7)),
                                             ((3, 3), "valid", (6, 6)), ((4, 4), "same", (8, 9)),
                                             ((5, 5), (1, 3), (10, 10)), ((3, 2), (0, 2), (7, 5)),
                                             ((3, 3), (4, 6), (8, 3)), ((5, 5), (0, 9), (6, 4))])
def test_stride_1_depthwise_dx_by_turned_filters_equals_the_scatter_loop(rng, size, padding, hw):
    """At stride 1 with one filter a channel, depthwise_backward takes dx as the forward kernel's
    conv of dz with the filters turned 180 degrees; the loop it replaced adds each dz w into dx
    position by position. Same sums in the same order: the same bits, borders and insides, for
    odd, even and non-square filters and asymmetric padding; padding wider than the filter (all-
    padding windows) keeps the loop; db left out when not wanted."""
    c = 19   # more than a vector of channels, not a multiple of one
    pads, out_hw = resolve_padding(padding, hw, size, (1, 1))
    x = rng.standard_normal((3,) + hw + (c,)).astype(np.float32)
    w = rng.standard_normal(size + (1, c)).astype(np.float32)
    dy = rng.standard_normal((3,) + out_hw + (c,)).astype(np.float32)
    dx, dw, db = dw_k.depthwise_backward(dy, x, dy, w, "linear", (1, 1), pads)
    scatter = np.empty_like(x)
    dw_k._depthwise_dx(dy, w.reshape(size + (c,)), 1, 1, pads[0], pads[2], scatter)
    np.testing.assert_array_equal(dx, scatter)
    dx2, dw2, none = dw_k.depthwise_backward(dy, x, dy, w, "linear", (1, 1), pads, need_db=False)
    np.testing.assert_array_equal(dx2, dx)
    np.testing.assert_array_equal(dw2, dw)
    assert none is None and db.shape == (c,)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_depthwise_is_deterministic_for_a_thread_count(rng, monkeypatch, threads):
    from cnncli.kernels import parallel
    monkeypatch.setattr(parallel, "_n_threads", threads)
    monkeypatch.setattr(parallel, "_pool", None)
    pads, out_hw = resolve_padding("same", (9, 9), (3, 3), (1, 1))
    x = rng.standard_normal((7, 9, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 16)).astype(np.float32)
    dy = rng.standard_normal((7, 9, 9, 16)).astype(np.float32)
    runs = []
    for _ in range(3):
        y = dw_k.depthwise_forward(x, w, None, "tanh", (1, 1), pads, out_hw)
        runs.append((y,) + dw_k.depthwise_backward(dy, x, y, w, "tanh", (1, 1), pads))
    if parallel._pool is not None:   # this test's own pool
        parallel._pool.shutdown()
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            np.testing.assert_array_equal(a, b)


POOL_CASES = [
    (2, 8, 8, 3, (2, 2), (2, 2), "valid"),
    (2, 7, 7, 3, (2, 2), (2, 2), "valid"),     # odd input: the last row / column is dropped
    (2, 7, 7, 3, (2, 2), (2, 2), "same"),      # odd input: padded cells must not count
    (1, 9, 6, 1, (3, 3), (2, 2), "same"),
    (3, 6, 9, 4, (3, 2), (1, 2), "valid"),     # overlapping, non-square
    (2, 5, 5, 2, (3, 3), (1, 1), (1, 1)),      # explicit padding, stride 1
    (1, 4, 4, 8, (4, 4), (4, 4), "valid"),     # one window = whole image
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_matches_naive(rng, case, mode, dtype):
    n, h, w, c, size, stride, padding = case
    pads, out_hw = resolve_padding(padding, (h, w), size, stride)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    if mode == "max":
        y, arg = pool_k.maxpool_forward(x, size, stride, pads, out_hw)
    else:
        y = pool_k.avgpool_forward(x, size, stride, pads, out_hw)
    ref = naive.pool2d(nchw(x).astype(np.float64), size, stride, pads, mode)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(nchw(y), ref, rtol=tol, atol=tol)

    dy = rng.standard_normal(y.shape).astype(dtype)
    if mode == "max":
        dx = pool_k.maxpool_backward(dy, arg, x.shape)
    else:
        dx = pool_k.avgpool_backward(dy, x.shape, size, stride, pads)
    rdx = naive.pool2d_backward(nchw(x).astype(np.float64), nchw(dy).astype(np.float64), size, stride, pads, mode)
    np.testing.assert_allclose(nchw(dx), rdx, rtol=tol, atol=tol)


def test_avgpool_same_excludes_padding_by_hand():
    # 3x3 input of ones, 2x2 window stride 2 'same' -> 2x2 output; the bottom-right window
    # holds one real cell. Counting padding would give 0.25 there; the rule gives 1.0.
    x = np.ones((1, 3, 3, 1), np.float32)
    pads, out_hw = resolve_padding("same", (3, 3), (2, 2), (2, 2))
    assert pads == (0, 1, 0, 1) and out_hw == (2, 2)
    y = pool_k.avgpool_forward(x, (2, 2), (2, 2), pads, out_hw)
    np.testing.assert_array_equal(y[0, :, :, 0], np.ones((2, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_global_pool_matches_naive(rng, dtype, mode):
    x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    if mode == "max":
        y, arg = pool_k.global_maxpool_forward(x)
        ref = x.max(axis=(1, 2))
    else:
        y = pool_k.global_avgpool_forward(x)
        ref = x.mean(axis=(1, 2), dtype=np.float64)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = pool_k.global_maxpool_backward(dy, arg, x.shape) if mode == "max" else pool_k.global_avgpool_backward(dy, x.shape)
    rdx = naive.pool2d_backward(nchw(x).astype(np.float64), dy[:, :, None, None].astype(np.float64),
                                (5, 4), (5, 4), (0, 0, 0, 0), mode)
    np.testing.assert_allclose(nchw(dx), rdx, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("fn", ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_matches_naive(rng, fn, dtype):
    z = (rng.standard_normal((5, 7)) * 3).astype(dtype)
    b = rng.standard_normal(7).astype(dtype)
    y = act_k.activate(z.copy(), fn, 0.1, b)
    ref = naive.activation(z.astype(np.float64) + b, fn, 0.1)
    assert y.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


def test_sigmoid_is_stable_for_large_inputs():
    z = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], np.float32)
    y = act_k.activate(z, "sigmoid")
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[0], [0, 1.9287e-22, 0.5, 1, 1], rtol=1e-3, atol=1e-30)


def test_nan_propagates_through_relu_and_maxpool():
    # NaN detection in the trainer depends on NaNs surviving the kernels.
    for fn in ("relu", "leaky_relu", "sigmoid", "tanh", "softmax"):
        z = np.array([[np.nan, 1.0]], np.float32)
        assert np.isnan(act_k.activate(z, fn)[0, 0]), fn
    x = np.full((1, 2, 2, 1), np.nan, np.float32)
    pads, out_hw = resolve_padding("valid", (2, 2), (2, 2), (2, 2))
    y, _ = pool_k.maxpool_forward(x, (2, 2), (2, 2), pads, out_hw)
    assert np.isnan(y).all()


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[0] > 1], ids=str)
def test_conv_matches_naive_without_kept_columns(rng, case, monkeypatch):
    # big layers recompute their columns in backward, a few images per GEMM
    monkeypatch.setattr(conv_algorithm, "KEEP_COLUMNS_BYTES", 0)
    monkeypatch.setattr(conv_k, "ROWS_PER_STEP", 64)
    test_conv_matches_naive(rng, case, np.float32)


# thin stride-1 layers (1 to 3 channels, at most conv_algorithm.DIRECT_MAX_FILTERS filters): taps per row of
# 1 to 5 (7 wide: 5 + 2), asymmetric padding, blocks of rows that do not divide the map, one pixel
DIRECT_CASES = [
    (3, 28, 28, 1, 6, (5, 5), (2, 2, 2, 2), "relu"),             # LeNet-5's first layer
    (2, 33, 30, 3, 8, (3, 3), (1, 1, 1, 1), "tanh"),
    (2, 9, 7, 2, 3, (7, 7), (0, 1, 3, 2), "leaky_relu"),
    (1, 5, 5, 1, 1, (1, 4), (0, 0, 2, 1), "sigmoid"),
    (2, 40, 3, 1, 2, (2, 1), (1, 0, 0, 0), "softmax"),
    (1, 1, 1, 3, 4, (3, 3), (1, 1, 1, 1), "linear"),
    (2, 12, 11, 3, 16, (3, 3), (1, 1, 1, 1), "relu"),          # ResNet-20's first layer
    (1, 10, 9, 2, 5, (4, 6), (2, 1, 3, 2), "relu"),            # an odd filter count, taps 4 and 5 + 1
]


@pytest.mark.parametrize("case", DIRECT_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [direct_k.DIRECT_BLOCK, 40])
def test_direct_thin_conv_matches_naive_and_columns(rng, case, dtype, block, monkeypatch):
    """Thin layers convolve directly; the naive convolution and the columns + GEMM path (the
    rule turned off) give the same outputs, whole maps at a time or a few rows (block: output
    positions per pass), with every activation."""
    monkeypatch.setattr(direct_k, "DIRECT_BLOCK", block)
    n, h, w, c, f, size, pads, act = case
    assert conv_algorithm.convolves_directly(c, size, (1, 1), pads, f)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = rng.standard_normal((f, c) + size).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    out_hw = (h + pads[0] + pads[1] - size[0] + 1, w + pads[2] + pads[3] - size[1] + 1)
    w_int = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    y, kept = conv_k.conv2d_forward(x, w_int, b, act, (1, 1), pads, out_hw, 0.2, may_keep=False)
    assert kept is None and y.dtype == dtype
    ref = naive.activation_nchw(naive.conv2d(nchw(x).astype(np.float64), wt.astype(np.float64),
                                             b.astype(np.float64), (1, 1), pads), act, 0.2)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nchw(y), ref, rtol=tol, atol=tol * np.abs(ref).max())
    monkeypatch.setattr(conv_algorithm, "DIRECT_MAX_FILTERS", 0)
    y_cols, _ = conv_k.conv2d_forward(x, w_int, b, act, (1, 1), pads, out_hw, 0.2)
    np.testing.assert_allclose(y, y_cols, rtol=tol, atol=tol * np.abs(ref).max())


def test_direct_conv_rule():
    from cnncli.model import Model

    m = Model((28, 28, 1), [("conv", {"filters": 6, "size": 5, "padding": "same"}),
                            ("conv", {"filters": 16, "size": 5}), ("globalavgpool", {}),
                            ("dense", {"units": 2, "activation": "softmax"})], seed=0)
    assert m.layers[0].describe().endswith(", direct")     # inspect's layer table shows it
    assert "direct" not in m.layers[1].describe()
    grouped = Model((8, 8, 6), [("conv", {"filters": 8, "size": 3, "padding": 1, "groups": 2}),
                                ("globalavgpool", {}), ("dense", {"units": 2, "activation": "softmax"})], seed=0)
    assert grouped.layers[0].describe() == "8× 3×3×3 g2, s1, pad 1, direct"   # 4 filters per group
    assert conv_algorithm.convolves_directly(1, (5, 5), (1, 1), (2, 2, 2, 2), 6)
    assert conv_algorithm.convolves_directly(3, (3, 3), (1, 1), (1, 1, 1, 1), 16)
    assert not conv_algorithm.convolves_directly(3, (3, 3), (1, 1), (1, 1, 1, 1), 17)   # GEMM wins at 32 filters
    assert not conv_algorithm.convolves_directly(3, (3, 3), (2, 2), (1, 1, 1, 1), 8)    # stride 2: columns
    assert not conv_algorithm.convolves_directly(4, (3, 3), (1, 1), (1, 1, 1, 1), 8)    # 4+ channels: columns
    assert not conv_algorithm.convolves_directly(1, (1, 1), (1, 1), (0, 0, 0, 0), 8)    # 1x1: the input is the columns


@pytest.mark.parametrize("c", [1, 3, 5])
def test_im2col_helper_matches_naive_windows(rng, c):
    x = rng.standard_normal((2, 5, 6, c)).astype(np.float32)
    pads, out_hw = resolve_padding("same", (5, 6), (3, 3), (1, 1))
    cols = conv_k.im2col(x, 3, 3, (1, 1), pads, out_hw)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = np.stack([xp[n, i:i + 3, j:j + 3, :].reshape(-1) for n in range(2) for i in range(5) for j in range(6)])
    np.testing.assert_array_equal(cols, want)


@pytest.mark.parametrize("shape", [(3, 5, 4, 6), (7, 9), (1, 1, 1, 2)])
def test_batchnorm_training_forward_matches_the_formula(rng, shape):
    """The compiled batch statistics and normalisation against numpy's textbook formula."""
    from cnncli.layers import Context
    from cnncli.layers.batchnorm import BatchNorm

    layer = BatchNorm(eps=1e-3)
    layer.build(shape[1:])
    layer.init_params(None, np.float32, "linear")
    layer.params["weight"][:] = rng.standard_normal(shape[-1])
    layer.params["bias"][:] = rng.standard_normal(shape[-1])
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    y = layer.forward(x, Context(training=True))
    x2 = x.reshape(-1, shape[-1]).astype(np.float64)
    mean, var = x2.mean(axis=0), x2.var(axis=0)
    ref = (x2 - mean) / np.sqrt(var + 1e-3) * layer.params["weight"] + layer.params["bias"]
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-5, atol=1e-5)
    m = x2.shape[0]
    np.testing.assert_allclose(layer.buffers["running_var"], 0.9 + 0.1 * var * m / max(m - 1, 1), rtol=1e-6)
    np.testing.assert_allclose(layer.buffers["running_mean"], 0.1 * mean, rtol=1e-5, atol=1e-7)


WINOGRAD_CASES = [  # (n, h, w, c, f, pads, activation): odd sizes (cut tiles at the edge), valid,
    # same, one side; the activation fused into the output transform (softmax after it)
    (2, 7, 9, 32, 33, (1, 1, 1, 1), "relu"), (3, 8, 8, 32, 32, (0, 0, 0, 0), "softmax"),
    (1, 5, 4, 40, 32, (1, 0, 0, 1), "leaky_relu"), (2, 3, 3, 32, 48, (1, 1, 1, 1), "tanh"),
    (1, 6, 11, 64, 32, (0, 1, 1, 0), "sigmoid"), (2, 13, 10, 16, 16, (1, 1, 1, 1), "linear"),
]


@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_matches_naive_forward_and_gradients(rng, case, dtype):
    from cnncli.kernels import winograd

    n, h, w, c, f, pads, act = case
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    wt = (rng.standard_normal((3, 3, c, f)) * 0.2).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    oh, ow = h + pads[0] + pads[1] - 2, w + pads[2] + pads[3] - 2
    y = winograd.winograd_conv(x, winograd.filter_tiles(wt), pads, (oh, ow), b, act, 0.1)
    w_b = np.ascontiguousarray(wt.transpose(3, 2, 0, 1))               # (F, C, 3, 3)
    ref = naive.activation_nchw(naive.conv2d(nchw(x), w_b, b, (1, 1), pads), act, 0.1)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(nchw(y), ref, rtol=tol, atol=tol * np.abs(ref).max())
    dz = rng.standard_normal((n, oh, ow, f)).astype(dtype)
    dx, dw, db = winograd.winograd_backward(dz, x, dz, wt, "linear", 0.1, pads)   # linear: y unread
    dx_ref, dw_ref, db_ref = naive.conv2d_backward(nchw(x), w_b, nchw(dz), (1, 1), pads)
    np.testing.assert_allclose(nchw(dx), dx_ref, rtol=tol, atol=tol * np.abs(dx_ref).max())
    np.testing.assert_allclose(dw.transpose(3, 2, 0, 1), dw_ref, rtol=tol, atol=tol * np.abs(dw_ref).max())
    np.testing.assert_allclose(db, db_ref, rtol=tol, atol=tol * np.abs(db_ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_in_many_steps_and_transform_blocks_matches_naive(rng, monkeypatch, dtype):
    """The weight gradient summed over several steps of tiles (the first written, the others
    added), and the filter transforms in blocks of columns with a short last one, as big layers
    run them: the naive convolution's results still."""
    from cnncli.kernels import winograd

    monkeypatch.setattr(winograd, "TILES_PER_STEP", 7)         # 12 tiles per image: a step per image
    monkeypatch.setattr(winograd, "TRANSFORM_COLUMNS", 100)    # 32 x 33 = 1,056 pairs: 11 blocks
    test_winograd_matches_naive_forward_and_gradients(rng, (3, 13, 10, 32, 33, (1, 1, 1, 1), "relu"), dtype)


def test_winograd_is_chosen_by_the_rule_and_shown(monkeypatch):
    from cnncli.model import Model

    m = Model((8, 8, 3), [("conv", {"filters": 32, "size": 3, "padding": "same"}),      # 3 channels in: im2col
                          ("conv", {"filters": 32, "size": 3, "padding": 1}),           # winograd
                          ("conv", {"filters": 32, "size": 3, "stride": 2}),            # stride 2: im2col
                          ("conv", {"filters": 16, "size": 3, "padding": 1}),           # 16 filters, 8x8: im2col
                          ("globalavgpool", {}), ("softmax", {})], build_params=False)
    assert [layer.algorithm for layer in m.layers[:4]] == ["im2col", "winograd", "im2col", "im2col"]
    assert m.layers[1].describe().endswith(", winograd")
    monkeypatch.setenv("CNNCLI_WINOGRAD", "0")
    assert Model((8, 8, 3), [("conv", {"filters": 32, "size": 1}), ("conv", {"filters": 32, "size": 3, "padding": 1}),
                             ("globalavgpool", {}), ("softmax", {})], build_params=False).layers[1].algorithm == "im2col"


@pytest.mark.parametrize("channels,filters,out_hw,expected", [
    (32, 32, (32, 32), True), (32, 64, (6, 6), True), (128, 128, (6, 40), True),
    (32, 32, (5, 5), False), (256, 256, (2, 2), False), (64, 64, (5, 9), False),
    (16, 16, (16, 16), True), (16, 64, (32, 20), True),      # fewer than 32 on one side: 16 x 16 maps
    (16, 16, (14, 14), False), (64, 16, (8, 8), False), (8, 8, (32, 32), False), (15, 32, (16, 16), False),
    (256, 256, (14, 14), True), (512, 512, (7, 7), False), (256, 512, (7, 7), False),   # U: 9.4, 38, 19 MB
    (384, 256, (14, 14), True), (384, 384, (14, 14), False)])                           # U: 14.2, 21.2 MB
def test_winograd_rule_on_channels_and_map_sizes(channels, filters, out_hw, expected):
    from cnncli.conv_algorithm import uses_winograd

    assert uses_winograd((3, 3), (1, 1), (1, 1, 1, 1), 1, channels, filters, out_hw) is expected


def test_winograd_training_step_equals_im2col(rng, monkeypatch):
    """The same network, weights and batch through both algorithms: loss and gradients agree."""
    from cnncli.engine.losses import Loss
    from cnncli.model import Model

    specs = [("conv", {"filters": 32, "size": 1, "activation": "relu"}),
             ("conv", {"filters": 32, "size": 3, "padding": "same", "activation": "relu"}),
             ("conv", {"filters": 32, "size": 3, "activation": "tanh"}), ("globalavgpool", {}),
             ("dense", {"units": 3, "activation": "softmax"})]
    x, y = rng.standard_normal((4, 12, 9, 3)).astype(np.float32), np.array([0, 2, 1, 1])
    runs = []
    for flag in ("1", "0"):
        monkeypatch.setenv("CNNCLI_WINOGRAD", flag)
        m = Model((12, 9, 3), specs, seed=5)
        assert m.layers[1].algorithm == ("winograd" if flag == "1" else "im2col")
        loss, _ = m.gradients(x, y, Loss(m.head))
        runs.append((loss, {k: g.copy() for k, _, g in m.named_params()}))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
    for k in runs[0][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_winograd_training_step_is_bit_identical_run_to_run(rng):
    """Threads split the images; each thread's weight-gradient share is added in chunk order, so
    two steps on the same batch give the same bits (the rule for every threaded kernel)."""
    from cnncli.kernels.parallel import n_threads
    from cnncli.engine.losses import Loss
    from cnncli.model import Model

    m = Model((16, 16, 16), [("conv", {"filters": 32, "size": 3, "padding": 1, "activation": "relu"}),
                             ("conv", {"filters": 32, "size": 3, "padding": 1, "bias": False}),
                             ("globalavgpool", {}), ("dense", {"units": 3, "activation": "softmax"})], seed=2)
    assert [layer.algorithm for layer in m.layers[:2]] == ["winograd", "winograd"]
    x, y = rng.standard_normal((9, 16, 16, 16)).astype(np.float32), np.arange(9) % 3
    runs = []
    for _ in range(2):
        m.gradients(x, y, Loss(m.head))
        runs.append({k: g.copy() for k, _, g in m.named_params()})
    for k in runs[0]:
        np.testing.assert_array_equal(runs[0][k], runs[1][k], err_msg=k)
    print(f"threads: {n_threads()}")


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (3.0, 1.0), (1e4, 1.0), (1e3, 0.01), (5.0, 1e-3)])
def test_batch_statistics_stay_exact_far_from_zero(rng, mean, std):
    """Float64 sums about the first row: the variance of data far from 0 (mean / std up to 1e5) to
    1e-9 of float64 numpy's figure. (An earlier one pass about the running mean lost up to 3e-4
    here: see the commit that added this test.)"""
    from cnncli.kernels.batchnorm import batch_stats

    x = (rng.standard_normal((20000, 5)) * std + mean).astype(np.float32)
    x64 = x.astype(np.float64)
    m, v, rows = batch_stats(x)
    assert rows == 20000
    np.testing.assert_allclose(m, x64.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v, x64.var(axis=0), rtol=1e-9)


def test_batch_statistics_over_two_processes_equal_the_whole_batch(rng):
    """Synchronised batchnorm: two processes' rows (each with its own first-row shift), their sums
    met by a summing `total`, give the whole batch's mean and variance."""
    import threading

    from cnncli.kernels.batchnorm import batch_stats

    x = (rng.standard_normal((3000, 7)) * 0.01 + 1e3).astype(np.float32)
    parts, box, results = [x[:1000], x[1000:]], [None, None], [None, None]
    barrier = threading.Barrier(2)

    def run(k):
        def total(a):
            box[k] = a
            barrier.wait()
            s = box[0] + box[1]
            barrier.wait()
            return s
        results[k] = batch_stats(parts[k], total)
    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    x64 = x.astype(np.float64)
    for mean, var, rows in results:
        assert rows == 3000
        np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(var, x64.var(axis=0), rtol=1e-9)


@pytest.mark.parametrize("fn", ["linear", "relu", "leaky_relu", "sigmoid", "tanh", "softmax"])
@pytest.mark.parametrize("inputs", [2, 3])
def test_an_add_layer_sums_and_activates_in_one_pass(rng, fn, inputs):
    """The add layer's kernel against numpy: act(a + b (+ c)), NaN passing through."""
    xs = [rng.standard_normal((3, 4, 5, 6)).astype(np.float32) for _ in range(inputs)]
    xs[0][0, 0, 0, 0] = np.nan
    y = act_k.added(xs, fn, 0.1)
    want = naive.activation(sum(x.astype(np.float64) for x in xs), fn, 0.1)
    assert y.dtype == np.float32 and y.shape == xs[0].shape
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert np.isnan(y[0, 0, 0, 0])


@pytest.mark.parametrize("spec,in_shape,algorithm,direct", [
    ({"filters": 6, "size": 5, "padding": "same"}, (12, 12, 1), "im2col", True),
    ({"filters": 32, "size": 3, "padding": "same"}, (8, 8, 32), "winograd", False),
    ({"filters": 8, "size": 3, "groups": 2}, (7, 7, 8), "grouped", False),
    ({"filters": 4, "size": 3, "groups": 2}, (7, 7, 4), "grouped", True),
    ({"filters": 8, "size": 1}, (5, 5, 6), "im2col", False),
])
def test_the_conv_algorithm_is_decided_once_when_the_layer_is_built(rng, monkeypatch, spec, in_shape, algorithm,
                                                                    direct):
    """Conv.build makes one ConvPlan; the layer, inspect's estimate and the kernels read it: with
    the rules gone after the build, a training step and an inference still run, as planned."""
    from cnncli.layers import Context

    layer = build_layer("conv", spec)
    layer.build(in_shape)
    layer.init_params(rng, np.float32, "relu")
    assert (layer.algorithm, layer.plan.direct) == (algorithm, direct)
    x = rng.standard_normal((3,) + in_shape).astype(np.float32)
    want = layer.forward(x, Context())
    for rule in ("plan", "convolves_directly", "planar_columns", "column_positions", "uses_winograd"):
        monkeypatch.setattr(conv_algorithm, rule, None)
    monkeypatch.setattr(conv_k, "conv_plan", None)
    ctx = Context(training=True)
    y = layer.forward(x, ctx)
    layer.backward(np.ones_like(y), ctx)
    np.testing.assert_allclose(layer.forward(x, Context()), want, rtol=1e-6)


@pytest.mark.parametrize("fn", ["relu", "relu6", "leaky_relu", "silu", "hardswish"])
def test_layer_passes_split_over_threads_equal_one_pass(rng, fn, monkeypatch):
    """An activation or add layer's own pass runs over row ranges on the threads (odd row and
    channel counts, so chunks split mid-image): values equal to the one-thread kernel and the
    naive reference, and the input is left as it was."""
    from cnncli.kernels import parallel

    monkeypatch.setattr(parallel, "_n_threads", 3)
    starts = []
    run = parallel.run_chunks
    monkeypatch.setattr(act_k, "run_chunks", lambda n, f, m=1: run(n, lambda lo, hi: starts.append(lo) or f(lo, hi), m))
    x = (rng.standard_normal((5, 45, 49, 19)) * 4).astype(np.float32)
    before = x.copy()
    y = act_k.activated(x, fn, 0.1)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(y, act_k.activate(x.copy(), fn, 0.1))
    np.testing.assert_allclose(y, naive.activation(x.astype(np.float64), fn, 0.1), rtol=1e-5, atol=1e-6)
    kept = x if act_k.keeps_input(fn) else y
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(act_k.activation_grad(dy, kept, fn, 0.1, split=True),
                                  act_k.activation_grad(dy, kept, fn, 0.1))
    c = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(act_k.added([x, c], fn, 0.1), act_k.activate(x + c, fn, 0.1))
    assert sorted(starts) == [0, 0, 0, 3675, 3675, 3675, 7350, 7350, 7350]   # 3 passes, 3 chunks each
    assert 3675 % (45 * 49)    # a chunk starts inside an image


@pytest.mark.parametrize("case", [   # (H, W, C, F, size, stride, pads (top, bottom, left, right), band bytes)
    (13, 9, 5, 12, (3, 3), (2, 2), (1, 1, 1, 1), 1),          # a band of one output row
    (13, 9, 5, 12, (3, 3), (1, 1), (0, 2, 1, 0), 3_000),      # asymmetric pads, bands of a few rows
    (11, 12, 3, 7, (5, 5), (2, 1), (2, 2, 2, 2), 6_000),      # 5x5, strides apart
    (8, 8, 4, 6, (3, 3), (1, 1), (1, 1, 1, 1), 1 << 20),      # the whole map in one band
    (4, 5, 3, 6, (3, 3), (1, 1), (4, 4, 1, 1), 1),            # padding wider than the window: bands of no rows
])
@pytest.mark.parametrize("stages", ["expand", "project", "both"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_1x1_convs_computed_in_bands_equal_the_three_layers_apart(rng, monkeypatch, case, stages, dtype):
    h, w, c, f, size, stride, pads, band = case
    monkeypatch.setattr(dw_k, "BAND_BYTES", band)
    x = rng.standard_normal((3, h, w, c)).astype(dtype)
    w1, b1 = rng.standard_normal((1, 1, c, f)).astype(dtype), rng.standard_normal(f).astype(dtype)
    wd, bd = rng.standard_normal(size + (1, f)).astype(dtype), rng.standard_normal(f).astype(dtype)
    w2, b2 = rng.standard_normal((1, 1, f, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)
    out_hw = ((h + pads[0] + pads[1] - size[0]) // stride[0] + 1, (w + pads[2] + pads[3] - size[1]) // stride[1] + 1)
    expand, project = (w1, b1, "relu6", 0.01), (w2, b2, "relu", 0.01)
    e = conv_k.conv2d_forward(x, w1, b1, "relu6", (1, 1), (0, 0, 0, 0), (h, w))[0] if stages != "project" else \
        rng.standard_normal((3, h, w, f)).astype(dtype)
    want = dw_k.depthwise_forward(e, wd, bd, "leaky_relu", stride, pads, out_hw, 0.1)
    if stages != "expand":
        want = conv_k.conv2d_forward(want, w2, b2, "relu", (1, 1), (0, 0, 0, 0), out_hw)[0]
    got = dw_k.banded_depthwise_forward(x if stages != "project" else e, wd, bd, "leaky_relu", stride, pads, out_hw,
                                        0.1, expand if stages != "project" else None,
                                        project if stages != "expand" else None)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
