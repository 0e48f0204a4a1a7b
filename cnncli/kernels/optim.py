"""The optimizers' per-value updates in one pass each (engine/optim.py has the rules), with the
slots' subnormal values flushed to zero.

Why flushed: a weight whose gradient stays 0 (a dead ReLU unit) has its momentum multiplied by mu
every step, and after ~800 steps at mu = 0.9 it is subnormal; arithmetic on subnormals takes the
CPU's slow path (about 100 cycles a value). LeNet-5 through `cnncli train`, 2,760 SGD steps: 12,900
of its 61,706 velocities subnormal from step ~1,200 on, and SGD's step 108 -> 354-544 us (a tenth
of the whole training step). Flushed, a value below the dtype's smallest normal (1.2e-38 in
float32) becomes 0; every other value is the float operations numpy's version did, in its order:

  SGD:   g' = g + wd p (decay only);  v = v mu + g';  s = g' + mu v (nesterov) or v;  p = p - lr s
  Adam:  g' = g + wd p (L2) or p = p (1 - lr wd) first (AdamW);  m = m b1 + (1 - b1) g';
         v = v b2 + ((1 - b2) g') g';  p = p - (lr / c1) m / (sqrt(v / c2) + eps)
"""

import numpy as np
from numba import njit

from . import JIT


@njit(**JIT)
def _sgd(p, g, v, lr, mu, wd, decay, nesterov, tiny, zero):
    for i in range(p.shape[0]):
        gi = g[i] + wd * p[i] if decay else g[i]
        vi = v[i] * mu + gi
        if -tiny < vi < tiny and vi != zero:
            vi = zero          # zero: 0 in p's dtype (a literal 0 would make numba widen vi)
        v[i] = vi
        s = gi + mu * vi if nesterov else vi
        p[i] = p[i] - lr * s


@njit(**JIT)
def _adam(p, g, m, v, lr_c1, b1, one_b1, b2, one_b2, c2, eps, wd, decay, decoupled, keep, tiny, zero):
    for i in range(p.shape[0]):
        if decay and decoupled:
            p[i] = p[i] * keep
        gi = g[i] + wd * p[i] if decay and not decoupled else g[i]
        mi = m[i] * b1 + one_b1 * gi
        if -tiny < mi < tiny and mi != zero:
            mi = zero
        vi = v[i] * b2 + one_b2 * gi * gi
        if vi < tiny and vi != zero:   # v >= 0
            vi = zero
        m[i], v[i] = mi, vi
        p[i] = p[i] - lr_c1 * mi / (np.sqrt(vi / c2) + eps)


def _flat(*arrays):
    """Flat views (one compiled version for every shape): the kernels write them in place."""
    if not all(a.flags.c_contiguous for a in arrays):
        raise ValueError("optimizer arrays must be C-contiguous (the update writes them in place, flat)")
    return [a.reshape(-1) for a in arrays]


def sgd_update(p, g, v, lr, mu, wd, decay, nesterov):
    """One SGD-with-momentum update of p and its velocity v, in place (the rule above)."""
    dt = p.dtype.type
    _sgd(*_flat(p, g, v), dt(lr), dt(mu), dt(wd), bool(decay), bool(nesterov), dt(np.finfo(p.dtype).tiny), dt(0))


def adam_update(p, g, m, v, lr, betas, eps, wd, decay, decoupled, c1, c2):
    """One Adam / AdamW update of p and its moments m and v, in place (the rule above)."""
    dt = p.dtype.type
    b1, b2 = betas
    _adam(*_flat(p, g, m, v), dt(lr / c1), dt(b1), dt(1 - b1), dt(b2), dt(1 - b2), dt(c2), dt(eps), dt(wd),
          bool(decay), bool(decoupled), dt(1 - lr * wd), dt(np.finfo(p.dtype).tiny), dt(0))
