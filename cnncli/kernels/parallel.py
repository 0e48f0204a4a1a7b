"""Split a batch across threads: each thread runs numba kernels (nogil) and single-threaded BLAS
GEMMs on its own images, so one set of threads does all the work and nothing spins beside it.

Measured on 2 cores (VGG conv 32->32 on 32x32, batch 64, forward): one batch-wide im2col and a
multi-threaded GEMM 49 GFLOP/s; per-image im2col into a cache-sized buffer and a single-threaded
GEMM, images split over 2 threads, 134 GFLOP/s.

The first use also sets single-threaded BLAS and glibc's malloc thresholds (see below).

Chunk boundaries depend only on the batch size and the thread count, and partial sums (weight
gradients) are added in chunk order, so results are bit-identical run to run for a given
thread count (CNNCLI_THREADS, default: the CPUs this process may use).
"""

import contextlib
import ctypes
import os
import threading

import numpy as np
from concurrent.futures import ThreadPoolExecutor

from ..memory import keep_freed_memory

_pool = None
_n_threads = None
MIN_VALUES_PER_THREAD = 1 << 16   # a pass over fewer values stays on one thread: the hand-off costs more
BLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                "openblas_set_num_threads64_", "openblas_set_num_threads", "MKL_Set_Num_Threads")


def n_threads():
    global _n_threads
    if _n_threads is None:
        env = os.environ.get("CNNCLI_THREADS", "")
        if env.isdigit() and int(env) > 0:
            _n_threads = int(env)
        else:
            try:
                _n_threads = len(os.sched_getaffinity(0))
            except AttributeError:
                _n_threads = os.cpu_count() or 1
        single_threaded_blas()
        keep_freed_memory()
    return _n_threads


def single_threaded_blas():
    """Ask numpy's BLAS (OpenBLAS or MKL, found among the loaded libraries) for one thread.
    Returns the setter used, or None where none was found (then BLAS keeps its own threads)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() or "mkl" in line.lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in BLAS_SETTERS:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(1))
                return name
    return None


def chunks(n, parts):
    """[(lo, hi)] splitting range(n) into `parts` near-equal pieces."""
    parts = max(1, min(parts, n))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


_local = threading.local()


@contextlib.contextmanager
def serial():
    """Inside: run_chunks runs on the calling thread (a thread that already holds one share of the
    batch, as parallel/threads.py's, splits it no further)."""
    before = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = before


def run_chunks(n, fn, min_per_chunk=1):
    """fn(lo, hi) over chunks of range(n), one per thread; the caller runs the first chunk.
    Returns the results in chunk order."""
    global _pool
    t = 1 if getattr(_local, "serial", False) else min(n_threads(), max(n // min_per_chunk, 1))
    if t <= 1:
        return [fn(0, n)]
    if _pool is None:
        _pool = ThreadPoolExecutor(n_threads() - 1, thread_name_prefix="cnncli")
    pieces = chunks(n, t)
    futures = [_pool.submit(_with_errstate, np.geterr(), fn, lo, hi) for lo, hi in pieces[1:]]
    results, errors = [], []
    for get in [lambda: fn(*pieces[0])] + [f.result for f in futures]:   # every chunk finishes
        try:
            results.append(get())
        except BaseException as e:
            errors.append(e)
    if errors:   # the chunk that failed first, not one it released from a barrier (parallel/threads.py)
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return results


def _with_errstate(err, fn, lo, hi):
    """fn(lo, hi) under the caller's numpy error handling (np.errstate is per thread): a training
    step that ignores overflow, as a diverging one does, ignores it in every thread."""
    with np.errstate(**err):
        return fn(lo, hi)


def added_in_order(parts):
    """Per-chunk tuples of partial sums (run_chunks' results) -> their totals, added in chunk
    order onto chunk 0's arrays (so a result depends on the thread count, never on timing).
    A None (a sum that was not wanted) stays None."""
    total = list(parts[0])
    for part in parts[1:]:
        for i, v in enumerate(part):
            if v is not None:
                total[i] += v
    return tuple(total)


def column_sums(a):
    """a (M, F) -> (F,): sum over rows as a BLAS matrix-vector product. numpy's a.sum(axis=0)
    walks a narrow array slowly: 0.36 ms against 0.05 ms for (25088, 6) float32."""
    return np.ones(a.shape[0], a.dtype) @ a
