"""Process memory as the OS sees it, and giving freed heap back to it.

The model manager measures what a model costs (resident set size before and after load
plus warm-up) instead of guessing from file sizes, because ONNX Runtime's arena, the
tokenizer and the graph optimiser all allocate beyond the weights. After an unload, glibc
keeps freed chunks in its arenas; ``malloc_trim(0)`` returns them to the OS so that the
RSS actually drops (measured and logged by the manager).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

import psutil

log = logging.getLogger(__name__)

_PROCESS = psutil.Process()


def rss() -> int:
    """Resident set size of this process, in bytes."""
    return int(_PROCESS.memory_info().rss)


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim"):
        return None  # not glibc (musl, macOS): freed memory goes back by the allocator's own rules
    return libc


_LIBC = _load_libc()


def trim() -> bool:
    """Collect garbage and return free heap pages to the OS. True when malloc_trim ran."""
    gc.collect()
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


def settled_rss() -> int:
    """RSS after a collection and a trim: the figure to compare across a load or unload."""
    trim()
    return rss()
