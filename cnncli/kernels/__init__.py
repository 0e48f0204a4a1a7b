"""Numba kernels: pure functions over arrays. Nothing here knows about layers or configs.

The numba flags are defined once, here, and named at every decorator:
  JIT = compiled once and cached on disk (a second process loads it, no compile), and releasing
        the GIL (nogil) so that parallel.run_chunks can run it on several threads at once.
No fastmath: it lets LLVM drop NaN/inf handling, and NaN detection must keep working. One
exception, named at its decorator: conv._direct_dw may reassociate and contract its sums (LLVM
vectorises a reduction only then); those two flags keep NaN and inf as they are.

Parallelism lives in parallel.py, not in numba's prange: the batch is split over Python threads,
each running these kernels and a single-threaded BLAS GEMM on its own images. Measured on 2 cores,
batch 64, training images/s, LeNet-5 / VGG-CIFAR:
  numba prange (OpenMP) beside OpenBLAS's own threads    790 / 173  (two spinning pools fight)
  serial numba, multi-threaded OpenBLAS                3,950 / 314
  one set of threads, per-image im2col + 1-thread GEMM  see BENCHMARKS.md
Numba's cache is keyed on each kernel file's timestamp, not on these flags: after changing them,
delete the cached *.nbi / *.nbc files (or touch the kernel files), or the old builds are loaded.

One LLVM option for every kernel: no interleaving of vectorised loops. With LLVM's default (four
vector bodies per iteration) a loop over 16 channels never enters its vector body (8 floats x 4
> 16) and runs scalar; the Winograd transforms loop over the channels of one tile. Measured, one
thread, 256 tiles, ms default / no interleaving: 16 channels input transform 0.060 / 0.047,
gradient transform 0.071 / 0.039; 128 channels 0.36 / 0.34 and 0.22 / 0.19. The option is LLVM's
own, so it holds for every numba function the process compiles afterwards (a program importing
cnncli next to its own numba code gets it too: a matter of speed, never of results).

Loading one of these kernels from the cache skips numba's registry refresh (_load_without_refresh):
one-image `cnncli predict` with a warm cache, median of 9, 0.53 -> 0.39 s.
"""

import llvmlite.binding
import numba
from numba.core import caching
from numba.core.runtime import nrt

JIT = dict(cache=True, nogil=True)
llvmlite.binding.set_option("", "--force-vector-interleave=1")


_numba_load_overload = caching.Cache.load_overload


def _load_without_refresh(self, sig, target_context):
    """numba's Cache.load_overload, for cnncli's own kernels without its first step,
    target_context.refresh(): that step imports numba's implementations of Python and numpy and
    installs every typing template, 128 ms that only compiling needs (numba's compiler refreshes
    the contexts itself before it compiles). Machine code loaded from the cache needs numba's
    runtime (NRT) linked, no more. Any other numba function in the process (a user's, or a
    @vectorize whose loading generates a wrapper and so needs the registries) loads as numba does."""
    if not getattr(getattr(self, "_py_func", None), "__module__", "").startswith(__name__ + "."):
        return _numba_load_overload(self, sig, target_context)
    nrt.rtsys.initialize(target_context)
    with self._guard_against_spurious_io_errors():
        return self._load_overload(sig, target_context)


# numba's load_overload is refresh, guard, _load_overload (checked in 0.59.1's and 0.68.1's source);
# a later numba keeps its own until someone checks it again
if (tuple(int(v) for v in numba.__version__.split(".")[:2]) <= (0, 68)
        and hasattr(caching.Cache, "_load_overload") and hasattr(caching.Cache, "_guard_against_spurious_io_errors")):
    caching.Cache.load_overload = _load_without_refresh


def modules():
    """The names of this package's kernel modules (every .py here but this one)."""
    import pkgutil

    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def dispatchers(names=None):
    """Every numba kernel in the named modules (default: all of them; imports them); not the
    helpers compiled into the kernels that call them (inline="always"), which are never
    compiled on their own. Which modules a network needs: layers.kernel_modules()."""
    import importlib

    found = []
    for name in modules() if names is None else names:
        module = importlib.import_module(f"{__name__}.{name}")
        found += [f for f in vars(module).values() if isinstance(f, numba.core.dispatcher.Dispatcher)
                  and f.targetoptions.get("inline") != "always" and f.py_func.__module__ == module.__name__]
    return found


def cache_counts():
    """(hits, misses) of numba's on-disk cache so far in this process: misses mean compiles."""
    hits = misses = 0
    for f in dispatchers():
        hits += sum(f.stats.cache_hits.values())
        misses += sum(f.stats.cache_misses.values())
    return hits, misses
