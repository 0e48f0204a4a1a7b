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


@njit(**JIT)
def _bias_act(z, b, act, alpha):
    rows, feats = z.shape
    has_bias = b.shape[0] == feats
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    for r in range(rows):
        for f in range(feats):
            v = z[r, f]
            if has_bias:
                v += b[f]
            if act == RELU:  # written so that NaN passes through (NaN < 0 is false)
                v = zero if v < zero else v
            elif act == LEAKY_RELU:
                v = v * alpha if v < zero else v
            elif act == SIGMOID:
                if v >= zero:
                    v = one / (one + np.exp(-v))
                else:
                    e = np.exp(v)
                    v = e / (one + e)
            elif act == TANH:
                v = np.tanh(v)
            z[r, f] = v


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
