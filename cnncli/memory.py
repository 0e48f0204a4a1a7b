"""glibc's malloc thresholds for array-heavy processes: cnncli's own (kernels/parallel.py sets
them at its first use) and, in the benchmark scripts, PyTorch's, so both sides allocate alike.
Kept out of cnncli.kernels so that setting them loads no numba."""

import ctypes


def keep_freed_memory():
    """Ask glibc to keep freed blocks for reuse instead of handing them back to the kernel.
    Every batch allocates the same large arrays again; fresh pages cost a page fault each.
    Measured on 2 cores, batch 64, ms per training step: LeNet-5 10.0-12.0 -> 7.7-8.0,
    VGG-CIFAR 133-141 -> 113-118. Returns True where mallopt was found (glibc)."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 32 << 20)     # glibc's maximum on 64-bit
    ok &= mallopt(m_trim_threshold, 1 << 30)
    return bool(ok)
