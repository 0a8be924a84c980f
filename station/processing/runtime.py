"""Process-level settings for number crunching, applied once at start-up by the ``fluxedge``
command, the flux worker and the benchmarks (the flux engine itself stays free of them).

- One BLAS thread per process (set before NumPy loads): the engine's matrices are small
  (6 x 36,000), where BLAS threads only contend, and parallel work goes through processes.
- glibc malloc keeps freed memory for reuse instead of returning each large block to the kernel:
  by default every NumPy temporary over 128 KiB is a fresh ``mmap`` whose pages fault in one by one
  (about a fifth of the engine's time on a 36,000-sample period). Freed memory stays with the process
  up to the trim threshold, so the resident size settles at the engine's peak and stays there.
"""

from __future__ import annotations

import ctypes
import os

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: glibc ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's own ceiling for its dynamic threshold
TRIM_THRESHOLD_BYTES = 128 * 2**20
TOP_PAD_BYTES = 16 * 2**20


def single_blas_thread() -> None:
    """One BLAS/OpenMP thread unless the environment says otherwise; effective only before NumPy loads."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def keep_freed_memory() -> bool:
    """Tune glibc malloc as the module docstring says; False where the C library is not glibc."""
    try:  # the symbols the process has loaded, libc's among them (not ctypes.util.find_library: it runs
        # ldconfig in a subprocess and imports subprocess, ~10 ms of every fluxedge command's start-up)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok &= mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    ok &= mallopt(M_TOP_PAD, TOP_PAD_BYTES) == 1
    return bool(ok)


def configure_numeric_process() -> None:
    single_blas_thread()
    keep_freed_memory()
