"""Element-wise activations, fused with a per-feature bias, and row-wise softmax.

Arrays are viewed as 2-D (rows, features): the last axis is the feature / channel axis.
Each activation's derivative is written from what it keeps (layers/activation.py FUNCTIONS says
which): the output y where y alone gives it (relu, leaky_relu, relu6, sigmoid, hardsigmoid,
tanh, softmax: nothing more is stored), the input z where it does not (hardswish, silu, gelu,
gelu_tanh: _grad_from_input). Every formula is PyTorch's (hardsigmoid = relu6(z + 3) / 6).
"""

import math

import numpy as np
from numba import njit

from . import JIT
from .parallel import MIN_VALUES_PER_THREAD, run_chunks

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4, 5
RELU6, HARDSIGMOID, HARDSWISH, SILU, GELU, GELU_TANH = 6, 7, 8, 9, 10, 11
CODES = {"linear": LINEAR, "relu": RELU, "leaky_relu": LEAKY_RELU, "sigmoid": SIGMOID, "tanh": TANH,
         "softmax": SOFTMAX, "relu6": RELU6, "hardsigmoid": HARDSIGMOID, "hardswish": HARDSWISH,
         "silu": SILU, "gelu": GELU, "gelu_tanh": GELU_TANH}
FROM_INPUT = (HARDSWISH, SILU, GELU, GELU_TANH)   # the derivative needs z, not y


@njit(inline="always")
def constants(a):
    """The constants of the activations in a's type, so float32 stays float32:
    (0, 1, 1/2, 3, 6, 1/6, 1/sqrt(2), sqrt(2/pi), 0.044715, 1/sqrt(2 pi))."""
    t = a.dtype.type
    return (t(0.0), t(1.0), t(0.5), t(3.0), t(6.0), t(1.0 / 6.0), t(0.7071067811865476),
            t(0.7978845608028654), t(0.044715), t(0.3989422804014327))


@njit(inline="always")
def _sigmoid(v, k):
    zero, one = k[0], k[1]
    if v >= zero:
        return one / (one + np.exp(-v))
    e = np.exp(v)
    return e / (one + e)


@njit(inline="always")
def _relu6(v, k):
    zero, six = k[0], k[4]
    return zero if v < zero else six if v > six else v   # NaN passes through


@njit(inline="always")
def _act(v, act, alpha, k):
    # one value through the activation (codes above; softmax has kernels of its own); k: constants()
    zero, one, half = k[0], k[1], k[2]
    if act == RELU:  # written so that NaN passes through (NaN < 0 is false)
        return zero if v < zero else v
    if act == LEAKY_RELU:
        return v * alpha if v < zero else v
    if act == SIGMOID:
        return _sigmoid(v, k)
    if act == TANH:
        return np.tanh(v)
    if act == RELU6:
        return _relu6(v, k)
    if act == HARDSIGMOID:
        return _relu6(v + k[3], k) * k[5]
    if act == HARDSWISH:
        return v * _relu6(v + k[3], k) * k[5]
    if act == SILU:
        return v * _sigmoid(v, k)
    if act == GELU:
        return half * v * (one + math.erf(v * k[6]))
    if act == GELU_TANH:
        return half * v * (one + np.tanh(k[7] * (v + k[8] * v * v * v)))
    return v


@njit(inline="always")
def _grad_from_output(g, v, act, alpha, k):
    # dL/dz from dL/dy = g and the output y = v
    zero, one = k[0], k[1]
    if act == RELU:
        return g if v > zero else zero
    if act == LEAKY_RELU:
        return g if v > zero else g * alpha
    if act == SIGMOID:
        return g * v * (one - v)
    if act == TANH:
        return g * (one - v * v)
    if act == RELU6:
        return g if zero < v < k[4] else zero
    if act == HARDSIGMOID:
        return g * k[5] if zero < v < one else zero
    return g


@njit(inline="always")
def _grad_from_input(g, v, act, k):
    # dL/dz from dL/dy = g and the input z = v
    zero, one, half, three = k[0], k[1], k[2], k[3]
    if act == HARDSWISH:   # PyTorch 2.13's: 0 up to -3, z / 3 + 1/2 between, 1 from 3 on
        return zero if v <= -three else g * (v / three + half) if v < three else g
    if act == SILU:
        s = _sigmoid(v, k)
        return g * s * (one + v * (one - s))
    if act == GELU:        # Phi(z) + z phi(z)
        return g * (half * (one + math.erf(v * k[6])) + v * k[9] * np.exp(-half * v * v))
    if act == GELU_TANH:
        t = np.tanh(k[7] * (v + k[8] * v * v * v))
        return g * (half * (one + t) + half * v * (one - t * t) * k[7] * (one + three * k[8] * v * v))
    return g


# Each kernel below runs one loop per activation with the code as a constant (the branch
# `if act == RELU` of the inlined loop then folds away), so that cheap activations vectorise:
# one loop testing the code per value ran relu 33 times slower (5.9 against 0.18 ms for 64 x 16
# x 16 x 64 values). The transcendental ones (sigmoid, tanh, silu, gelu) share one loop: exp,
# tanh and erf cost far more than the test.

@njit(inline="always")
def _bias_act_loop(z, b, act, alpha, k):
    rows, feats = z.shape
    has_bias = b.shape[0] == feats
    for r in range(rows):
        for f in range(feats):
            v = z[r, f]
            if has_bias:
                v += b[f]
            z[r, f] = _act(v, act, alpha, k)


@njit(**JIT)
def _bias_act(z, b, act, alpha):
    # z = act(z + b) in place. Its own loop, not _act_into's with out = z: LLVM cannot tell the
    # two arrays apart there, checks for overlap at run time, and runs the overlapping call scalar
    # (LeNet-5 inference 0.89x, VGG-CIFAR 0.92x that way)
    k = constants(z)
    if act == RELU:
        _bias_act_loop(z, b, RELU, alpha, k)
    elif act == LEAKY_RELU:
        _bias_act_loop(z, b, LEAKY_RELU, alpha, k)
    elif act == RELU6:
        _bias_act_loop(z, b, RELU6, alpha, k)
    elif act == HARDSIGMOID:
        _bias_act_loop(z, b, HARDSIGMOID, alpha, k)
    elif act == HARDSWISH:
        _bias_act_loop(z, b, HARDSWISH, alpha, k)
    elif act == LINEAR:
        _bias_act_loop(z, b, LINEAR, alpha, k)
    else:
        _bias_act_loop(z, b, act, alpha, k)


@njit(inline="always")
def _act_into_loop(z, act, alpha, k, out):
    rows, feats = z.shape
    for r in range(rows):
        for f in range(feats):
            out[r, f] = _act(z[r, f], act, alpha, k)


@njit(**JIT)
def _act_into(z, act, alpha, out):
    # out = act(z), a new array (an activation layer)
    k = constants(z)
    if act == RELU:
        _act_into_loop(z, RELU, alpha, k, out)
    elif act == LEAKY_RELU:
        _act_into_loop(z, LEAKY_RELU, alpha, k, out)
    elif act == RELU6:
        _act_into_loop(z, RELU6, alpha, k, out)
    elif act == HARDSIGMOID:
        _act_into_loop(z, HARDSIGMOID, alpha, k, out)
    elif act == HARDSWISH:
        _act_into_loop(z, HARDSWISH, alpha, k, out)
    elif act == LINEAR:
        _act_into_loop(z, LINEAR, alpha, k, out)
    else:
        _act_into_loop(z, act, alpha, k, out)


@njit(inline="always")
def _sum_act_loop(a, c, act, alpha, k, out):
    rows, feats = a.shape
    for r in range(rows):
        for f in range(feats):
            out[r, f] = _act(a[r, f] + c[r, f], act, alpha, k)


@njit(**JIT)
def _sum_act(a, c, act, alpha, out):
    # out = act(a + c): an add layer's sum and activation in one pass
    k = constants(out)
    if act == RELU:
        _sum_act_loop(a, c, RELU, alpha, k, out)
    elif act == LEAKY_RELU:
        _sum_act_loop(a, c, LEAKY_RELU, alpha, k, out)
    elif act == RELU6:
        _sum_act_loop(a, c, RELU6, alpha, k, out)
    elif act == HARDSIGMOID:
        _sum_act_loop(a, c, HARDSIGMOID, alpha, k, out)
    elif act == HARDSWISH:
        _sum_act_loop(a, c, HARDSWISH, alpha, k, out)
    elif act == LINEAR:
        _sum_act_loop(a, c, LINEAR, alpha, k, out)
    else:
        _sum_act_loop(a, c, act, alpha, k, out)


@njit(inline="always")
def _act_grad_loop(dy, kept, act, alpha, k, dz):
    rows, feats = kept.shape
    for r in range(rows):
        for f in range(feats):
            if act == HARDSWISH or act == SILU or act == GELU or act == GELU_TANH:
                dz[r, f] = _grad_from_input(dy[r, f], kept[r, f], act, k)
            else:
                dz[r, f] = _grad_from_output(dy[r, f], kept[r, f], act, alpha, k)


@njit(**JIT)
def _act_grad(dy, kept, act, alpha, dz):
    # kept: the output y, or the input z for the activations in FROM_INPUT
    k = constants(kept)
    if act == RELU:
        _act_grad_loop(dy, kept, RELU, alpha, k, dz)
    elif act == LEAKY_RELU:
        _act_grad_loop(dy, kept, LEAKY_RELU, alpha, k, dz)
    elif act == RELU6:
        _act_grad_loop(dy, kept, RELU6, alpha, k, dz)
    elif act == HARDSIGMOID:
        _act_grad_loop(dy, kept, HARDSIGMOID, alpha, k, dz)
    elif act == HARDSWISH:
        _act_grad_loop(dy, kept, HARDSWISH, alpha, k, dz)
    elif act == SIGMOID:
        _act_grad_loop(dy, kept, SIGMOID, alpha, k, dz)
    elif act == TANH:
        _act_grad_loop(dy, kept, TANH, alpha, k, dz)
    else:
        _act_grad_loop(dy, kept, act, alpha, k, dz)


@njit(**JIT)
def _softmax_rows(z, y):
    rows, feats = z.shape
    for r in range(rows):
        m = z[r, 0]
        for f in range(1, feats):
            if z[r, f] > m:
                m = z[r, f]
        s = z.dtype.type(0)
        for f in range(feats):
            e = np.exp(z[r, f] - m)
            y[r, f] = e
            s += e
        for f in range(feats):
            y[r, f] /= s


@njit(**JIT)
def _softmax_grad(dy, y, dz):
    rows, feats = y.shape
    for r in range(rows):
        dot = y.dtype.type(0)
        for f in range(feats):
            dot += dy[r, f] * y[r, f]
        for f in range(feats):
            dz[r, f] = y[r, f] * (dy[r, f] - dot)


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def activate(z, act, alpha=0.01, bias=None):
    """y = act(z + bias), in place on z (C-contiguous, last axis = features). Returns z."""
    assert z.flags.c_contiguous
    code = CODES[act]
    if code == SOFTMAX:
        if bias is not None:
            z += bias
        _softmax_rows(_rows(z), _rows(z))
        return z
    if code == LINEAR and bias is None:
        return z
    b = np.empty(0, z.dtype) if bias is None else bias
    _bias_act(_rows(z), b, code, z.dtype.type(alpha))
    return z


def _split_rows(a, fn):
    """fn(lo, hi) over row ranges of a's 2-D view, one per thread where a is big enough (a layer's
    own element-wise pass; the kernels that call activate inside their chunks stay on their thread)."""
    feats = a.shape[-1] if a.ndim else 1
    run_chunks(a.size // max(feats, 1), fn, max(1, MIN_VALUES_PER_THREAD // max(feats, 1)))


def activated(x, act, alpha=0.01):
    """act(x) as a new array, split over the threads (an activation layer): one pass, where a copy
    and an in-place pass on one thread took two."""
    code = CODES[act]
    x = np.ascontiguousarray(x)
    if code == SOFTMAX:
        return activate(x.copy(), act, alpha)
    y = np.empty_like(x)
    x2, y2, a = _rows(x), _rows(y), x.dtype.type(alpha)
    _split_rows(x, lambda lo, hi: _act_into(x2[lo:hi], code, a, y2[lo:hi]))
    return y


def added(xs, act, alpha=0.01):
    """act(sum of the arrays xs) as a new array (an add layer): the first two summed and activated
    in one pass (numpy's add, then the activation, took three)."""
    code = CODES[act]
    a, c = np.ascontiguousarray(xs[0]), np.ascontiguousarray(xs[1])
    y = np.empty(a.shape, np.result_type(a, c))     # the add layer's inputs share one shape
    if len(xs) > 2 or code == SOFTMAX:
        np.add(a, c, out=y)
        for x in xs[2:]:
            y += x
        return activate(y, act, alpha)
    a2, c2, y2, al = _rows(a), _rows(c), _rows(y), y.dtype.type(alpha)
    _split_rows(y, lambda lo, hi: _sum_act(a2[lo:hi], c2[lo:hi], code, al, y2[lo:hi]))
    return y


def activation_grad(dy, kept, act, alpha=0.01, split=False):
    """dL/dz from dL/dy and what the activation keeps: its output y, or its input z for the
    activations whose derivative needs it (FROM_INPUT). split: over the threads (a layer's own
    pass; False inside a kernel's chunk, which already runs on its thread)."""
    code = CODES[act]
    if code == LINEAR:
        return dy
    dy = np.ascontiguousarray(dy)
    dz = np.empty_like(kept)
    if code == SOFTMAX:
        _softmax_grad(_rows(dy), _rows(kept), _rows(dz))
        return dz
    d2, k2, z2, a = _rows(dy), _rows(kept), _rows(dz), kept.dtype.type(alpha)
    if split:
        _split_rows(kept, lambda lo, hi: _act_grad(d2[lo:hi], k2[lo:hi], code, a, z2[lo:hi]))
    else:
        _act_grad(d2, k2, code, a, z2)
    return dz


def keeps_input(act):
    """Does act's derivative need its input z (True) or does its output y suffice (False)?"""
    return CODES[act] in FROM_INPUT
