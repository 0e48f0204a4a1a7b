"""Numba kernels: pure functions over arrays. Nothing here knows about layers or configs.

The numba flags are defined once, here, and named at every decorator:
  JIT  = serial kernel, cached on disk so a second process does not compile again
  PJIT = the same, parallel over the batch (prange over the first axis)
No fastmath: it lets LLVM drop NaN/inf handling, and NaN detection must keep working.
"""

import numba

# Prefer OpenMP (~2 us per parallel region) over numba's own workqueue (~180 us).
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

JIT = dict(cache=True, nogil=True)
PJIT = dict(JIT, parallel=True)


def dispatchers():
    """Every numba kernel in this package (imports them all)."""
    from . import activation, augment, conv, pool

    found = []
    for module in (activation, augment, conv, pool):
        found += [f for f in vars(module).values() if isinstance(f, numba.core.dispatcher.Dispatcher)]
    return found


def cache_counts():
    """(hits, misses) of numba's on-disk cache so far in this process: misses mean compiles."""
    hits = misses = 0
    for f in dispatchers():
        hits += sum(f.stats.cache_hits.values())
        misses += sum(f.stats.cache_misses.values())
    return hits, misses
