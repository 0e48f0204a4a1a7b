"""Dense (fully connected) layer math: y = act(x W^T + b), W in the (units, in_features) layout.

Rows of the batch are split over threads (single-threaded BLAS in each) when the layer is big
enough to pay for the hand-off; small layers run on the calling thread.
"""

import numpy as np

from .activation import activate, activation_grad
from .parallel import added_in_order, column_sums, run_chunks

MIN_MACS_PER_THREAD = 1 << 20


def _rows_per_chunk(x, w):
    return max(1, MIN_MACS_PER_THREAD // max(w.shape[0] * w.shape[1], 1))


def dense_forward(x, w, bias, act, alpha=0.01):
    """(N, D) -> (N, U)."""
    y = np.empty((x.shape[0], w.shape[0]), x.dtype)

    def part(lo, hi):
        np.matmul(x[lo:hi], w.T, out=y[lo:hi])
        activate(y[lo:hi], act, alpha, bias)

    run_chunks(x.shape[0], part, _rows_per_chunk(x, w))
    return y


def dense_backward(dy, x, y, w, act, need_dx=True, alpha=0.01):
    """-> (dx or None, dw (U, D), db (U,)): dz = dy * act'(y), dw = dz^T x, dx = dz W."""
    dy = np.ascontiguousarray(dy)
    dx = np.empty(x.shape, x.dtype) if need_dx else None

    def part(lo, hi):
        dz = activation_grad(dy[lo:hi], y[lo:hi], act, alpha)
        if need_dx:
            np.matmul(dz, w, out=dx[lo:hi])
        return dz.T @ x[lo:hi], column_sums(dz)

    dw, db = added_in_order(run_chunks(x.shape[0], part, _rows_per_chunk(x, w)))
    return dx, dw, db
