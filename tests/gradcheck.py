"""Central finite differences in float64, on a random sample of entries."""

import numpy as np


def numeric_grad(f, arr, indices, eps=1e-6):
    out = []
    for idx in indices:
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        out.append((fp - fm) / (2 * eps))
    return np.array(out)


def sample_indices(arr, rng, k=25):
    flat = rng.choice(arr.size, size=min(k, arr.size), replace=False)
    return [np.unravel_index(i, arr.shape) for i in flat]


def assert_grad_close(f, arr, analytic, rng, k=25, rtol=1e-5, atol=1e-7):
    idx = sample_indices(arr, rng, k)
    num = numeric_grad(f, arr, idx)
    ana = np.array([analytic[i] for i in idx])
    np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol)
