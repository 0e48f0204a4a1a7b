"""Element-wise activations, fused with a per-feature bias, and row-wise softmax.

Arrays are viewed as 2-D (rows, features): the last axis is the feature / channel axis.
Backward passes are written in terms of the output y, so the pre-activation is never stored.
"""

import numpy as np
from numba import njit

from . import JIT

LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4, 5
CODES = {"linear": LINEAR, "relu": RELU, "leaky_relu": LEAKY_RELU,
         "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX}


@njit(inline="always")
def _act(v, act, alpha, zero, one):
    # one value through the activation (codes above; softmax has kernels of its own); zero and
    # one in the arrays' type, so float32 stays float32
    if act == RELU:  # written so that NaN passes through (NaN < 0 is false)
        return zero if v < zero else v
    if act == LEAKY_RELU:
        return v * alpha if v < zero else v
    if act == SIGMOID:
        if v >= zero:
            return one / (one + np.exp(-v))
        e = np.exp(v)
        return e / (one + e)
    if act == TANH:
        return np.tanh(v)
    return v


@njit(**JIT)
def _bias_act(z, b, act, alpha):
    rows, feats = z.shape
    has_bias = b.shape[0] == feats
    zero, one = z.dtype.type(0), z.dtype.type(1)
    for r in range(rows):
        for f in range(feats):
            v = z[r, f]
            if has_bias:
                v += b[f]
            z[r, f] = _act(v, act, alpha, zero, one)


@njit(**JIT)
def _sum_act(a, c, act, alpha, out):
    # out = act(a + c): an add layer's sum and activation in one pass
    rows, feats = a.shape
    zero, one = out.dtype.type(0), out.dtype.type(1)
    for r in range(rows):
        for f in range(feats):
            out[r, f] = _act(a[r, f] + c[r, f], act, alpha, zero, one)


@njit(**JIT)
def _act_grad(dy, y, act, alpha, dz):
    rows, feats = y.shape
    one = y.dtype.type(1)
    zero = y.dtype.type(0)
    for r in range(rows):
        for f in range(feats):
            g = dy[r, f]
            v = y[r, f]
            if act == RELU:
                g = g if v > zero else zero
            elif act == LEAKY_RELU:
                g = g if v > zero else g * alpha
            elif act == SIGMOID:
                g = g * v * (one - v)
            elif act == TANH:
                g = g * (one - v * v)
            dz[r, f] = g


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
    _sum_act(_rows(a), _rows(c), code, y.dtype.type(alpha), _rows(y))
    return y


def activation_grad(dy, y, act, alpha=0.01):
    """dL/dz from dL/dy and the activation's output y."""
    code = CODES[act]
    if code == LINEAR:
        return dy
    dy = np.ascontiguousarray(dy)
    dz = np.empty_like(y)
    if code == SOFTMAX:
        _softmax_grad(_rows(dy), _rows(y), _rows(dz))
    else:
        _act_grad(_rows(dy), _rows(y), code, y.dtype.type(alpha), _rows(dz))
    return dz
