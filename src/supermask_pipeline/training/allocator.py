"""Keep freed memory inside the process on the CPU, so that training steps do not page-fault.

A training step allocates and frees tensors of the same sizes every step (effective weights,
gradients, activations: about 1 MB each for the FCN's first layer). glibc's malloc serves
blocks above its mmap threshold with fresh mappings and returns the top of the heap to the
system above its trim threshold, so every step touches new pages, and the kernel's page faults
(zeroing each 4 KiB page) cost as much as the step's arithmetic: measured on the project's 2-core
machine, FCN signed supermask, the matrix products took 42.8 ms and the masks' ``where`` and
``fill`` 58.6 ms of a 179 ms profile with the defaults, 27.6 ms and 12.9 ms with the memory kept
(``benchmarks/README.md``). This is the advice of PyTorch's CPU performance guides (a caching
allocator, e.g. jemalloc or tcmalloc through ``LD_PRELOAD``), done in-process through glibc's
``mallopt``, so a plain ``kedro run`` gets it. The results do not change: only where memory
comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

#: Set to 0 to leave the C allocator as it is.
ENVIRONMENT_VARIABLE = "SUPERMASK_KEEP_CPU_MEMORY"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD = 1 << 30   # return heap memory to the system only above 1 GiB free at its top
_MMAP_THRESHOLD = 32 << 20  # glibc's upper limit: blocks up to 32 MiB come from the heap

_done: bool | None = None


def keep_cpu_memory() -> bool:
    """Raise glibc malloc's trim and mmap thresholds once per process (see the module docstring).

    Returns:
        True when the thresholds are set (now or by an earlier call); False where the C
        library is not glibc, ``mallopt`` refused, or ``SUPERMASK_KEEP_CPU_MEMORY=0``.
        Never raises.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get(ENVIRONMENT_VARIABLE, "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    logger.debug("glibc malloc thresholds raised (trim 1 GiB, mmap 32 MiB): %s", _done)
    return _done


__all__ = ["ENVIRONMENT_VARIABLE", "keep_cpu_memory"]
