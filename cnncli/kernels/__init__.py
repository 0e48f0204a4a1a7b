"""Numba kernels: pure functions over arrays. Nothing here knows about layers or configs.

The numba flags are defined once, here, and named at every decorator:
  JIT  = serial kernel, cached on disk so a second process does not compile again
  PJIT = a kernel whose outer loop over the batch is a prange, so it can run in parallel
No fastmath: it lets LLVM drop NaN/inf handling, and NaN detection must keep working.

PJIT is serial for now, on purpose. The GEMMs of conv and dense run in numpy's OpenBLAS, which has
its own threads; numba's pool beside it fights for the same cores (both spin while waiting).
Measured on 2 cores, batch 64, training images/s, LeNet-5 / VGG-CIFAR:
  numba parallel + BLAS threads        790 / 173
  numba parallel, OMP_WAIT_POLICY=passive  3,430 / 305
  numba serial   + BLAS threads      3,950 / 314   <- this setting
Set PARALLEL = True to try the prange loops again once the GEMMs move inside the kernels.
Numba's cache is keyed on each kernel file's timestamp, not on these flags: after changing them,
delete the cached *.nbi / *.nbc files (or touch the kernel files) or the old builds are loaded.
"""

import numba

PARALLEL = False
# Prefer OpenMP (~2 us per parallel region) over numba's own workqueue (~180 us).
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

JIT = dict(cache=True, nogil=True)
PJIT = dict(JIT, parallel=PARALLEL)


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
