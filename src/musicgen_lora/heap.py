"""glibc malloc thresholds, set around the two kinds of work they slow down.

glibc serves allocations above M_MMAP_THRESHOLD (dynamic, at most 32 MiB) with fresh mmaps and
gives them back on free. Tensors above that size then cost page faults on every use; below it,
freed blocks stay in the heap, which keeps the high-water mark of every step resident. Both
helpers are no-ops where there is no glibc.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
DEFAULT_MMAP, DEFAULT_TRIM = 32 << 20, 64 << 20  # glibc's dynamic ceiling, and twice it


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def _thresholds(mmap: int, trim: int, enabled: bool = True) -> Iterator[bool]:
    libc = _libc() if enabled else None
    on = bool(libc and libc.mallopt(M_MMAP_THRESHOLD, mmap) and libc.mallopt(M_TRIM_THRESHOLD, trim))
    try:
        yield on
    finally:
        if on:
            libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM)
            libc.malloc_trim(0)


def large_heap(enabled: bool = True) -> contextlib.AbstractContextManager[bool]:
    """Keep freed buffers up to 1 GiB in the heap for reuse. Encoding or decoding a batch of 15 s
    clips allocates 100+ MiB activations per conv layer: as fresh mmaps, page faults made a
    batch of 8 encode 1.6x slower than the same clips one at a time (tiny codec, 1 thread), and
    generation (whose audio decode is half its time on the tiny model) 1.2x slower."""
    return _thresholds(1 << 30, 2 << 30, enabled)


def limited_heap(enabled: bool = True) -> contextlib.AbstractContextManager[bool]:
    """Serve allocations of 1 MiB and more straight from mmap, so freed activations go back to
    the OS: in a training step of a 1024-wide decoder every 3-12 MiB activation would otherwise
    land in the heap, and the process keeps the high-water mark of every step (a step without
    checkpointing then peaks near 9 GB instead of 5). Generation must not run like this: its
    per-call weight-packing buffers would be fresh, page-faulting mappings on every matmul."""
    return _thresholds(1 << 20, 1 << 20, enabled)
