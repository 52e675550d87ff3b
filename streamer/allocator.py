"""The C allocator of a worker process: keep what it holds of freed memory small.

A worker's memory passes through glibc's ``malloc``: librdkafka's fetched and queued
records, its producers' queues, and every Python object larger than 512 bytes (most input
records). glibc gives each thread that allocates while another holds an arena a new arena
of its own, up to 8 per core, and keeps what is freed in each for reuse; a worker has ~25
threads (librdkafka's, two per broker and client, the fetch thread, the keyed stages), so
memory freed in one arena is not reused by the others. Large blocks come from ``mmap`` (given
back when freed) only above a threshold that glibc raises to the largest block freed so far,
after which fetch buffers of a few MB stay in the arenas too.

Measured with the 400,000-record replay (``streamer bench soak --replay-hours 5.5``): ~130 MB
of arenas of which 70-100 MB were free; the peak RSS fell from 300 to 276 MB with two arenas,
to 266 MB with a fixed ``mmap`` threshold as well. So the worker asks glibc, before it starts any
thread, for ``ARENAS`` arenas and a fixed ``MMAP_THRESHOLD`` (which also fixes the trim
threshold, so freed memory at the top of an arena goes back). The environment's
``MALLOC_ARENA_MAX`` / ``MALLOC_MMAP_THRESHOLD_``, when set, win. Other C libraries: nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("streamer.allocator")

#: glibc's ``mallopt`` parameters (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: Arenas for the whole process: threads share them (allocation contention is small next to
#: the per-record work: CPU per event unchanged within the noise, docs/performance.md).
ARENAS = 2
#: Blocks from this size up are mapped and given back when freed (glibc's starting value).
MMAP_THRESHOLD = 262_144


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (its ``mallopt`` understands the above)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        version = libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None  # musl, macOS: other allocators, other knobs
    version.restype = ctypes.c_char_p
    return libc


def tune() -> dict[str, int]:
    """Apply the worker's allocator settings (call before any thread starts); returns those
    applied, by ``mallopt`` parameter name."""
    libc = _glibc()
    if libc is None:
        return {}
    applied: dict[str, int] = {}
    for env, name, param, value in (
        ("MALLOC_ARENA_MAX", "M_ARENA_MAX", M_ARENA_MAX, ARENAS),
        ("MALLOC_MMAP_THRESHOLD_", "M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ):
        if env in os.environ:
            continue  # the operator's choice
        if libc.mallopt(param, value) == 1:
            applied[name] = value
        else:
            log.warning("mallopt(%s, %d) refused", name, value)
    return applied
