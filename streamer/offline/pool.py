"""Running a :class:`~streamer.offline.labeller.Labeller` over chunks, on every core.

Results come back in input order whatever the number of processes. With ``jobs`` > 1 and more
than one chunk of input, chunks go to a pool of forked worker processes (each inherits the
labeller, so the rules are loaded once, by the parent, which labels the first chunk before
forking, so they also inherit the warmed-up classifier); at most a few chunks per process are in
flight, so memory stays bounded on inputs of any size. Workers ignore Ctrl-C: the parent stops
handing out work and shuts the pool down. Inputs of one chunk or less, platforms without
``fork``, and ``jobs`` 1 run in this process (a pool costs more than it saves there).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import signal
import tempfile
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING

from streamer.offline.chunks import InputFailed, LineChunk
from streamer.offline.labeller import Labelled, Labeller, write_output

if TYPE_CHECKING:  # imported where a pool runs: a run in this process starts leaner
    from concurrent.futures import Future

#: Chunks in flight per worker process: enough to keep every worker busy while the parent
#: writes a result, few enough to bound memory (a few MB each).
IN_FLIGHT_PER_JOB = 3

#: Where the parent leaves chunks for the workers and they leave their output (memory-backed
#: when there is one): moving data through files costs far less than through the pool's pipes
#: (no pickling, no 64 KB-at-a-time hand-offs between processes: measured, a third of the
#: system time). Only names and counts go through the pipes.
SPOOL_PARENT = "/dev/shm" if os.path.isdir("/dev/shm") else None

_worker: Labeller | None = None
_spool: str | None = None


def default_jobs() -> int:
    return os.cpu_count() or 1


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _start_worker(labeller: Labeller, spool: str) -> None:
    global _worker, _spool
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    _worker, _spool = labeller, spool


def _spool_chunk(chunk: LineChunk, spool: str) -> tuple[LineChunk, str]:
    """The chunk without its data, and the file holding the data."""
    fd, path = tempfile.mkstemp(dir=spool)
    with os.fdopen(fd, "wb") as fh:
        fh.write(chunk.data)
    return dataclasses.replace(chunk, data=b""), path


def _label_in_worker(chunk: LineChunk, data_path: str) -> Labelled:
    assert _worker is not None and _spool is not None, "worker not initialised"
    with open(data_path, "rb") as fh:
        os.unlink(data_path)
        chunk = dataclasses.replace(chunk, data=fh.read())
    result = _worker.label(chunk)
    if result.output:
        fd, path = tempfile.mkstemp(dir=_spool)
        with os.fdopen(fd, "wb") as fh:
            write_output(fh, result.output)
        result.output, result.spooled = b"", path
    return result


def label_all(
    items: Iterable[LineChunk | InputFailed], labeller: Labeller, jobs: int
) -> Generator[Labelled | InputFailed, None, None]:
    """The :class:`Labelled` result of every chunk (and every :class:`InputFailed` as it
    is), in input order, with up to ``jobs`` processes. Write each result's output
    (``Labelled.write_to``) before asking for the next: a worker's output file is removed when
    the iteration ends. ``close()`` the iterator to stop the workers early."""
    stream = iter(items)
    head: list[LineChunk | InputFailed] = []
    chunks = 0
    for item in stream:  # look ahead: is there more than one chunk?
        head.append(item)
        chunks += isinstance(item, LineChunk)
        if chunks > 1:
            break
    if jobs <= 1 or chunks < 2 or not can_fork():
        for item in itertools.chain(head, stream):
            yield item if isinstance(item, InputFailed) else labeller.label(item)
        return
    # The first chunk here, before forking: the workers inherit what labelling it built (the
    # RE2 set's DFA states, costly to build on a process's first lines, and the memo).
    for item in head[:-1]:
        yield item if isinstance(item, InputFailed) else labeller.label(item)
    yield from _in_pool(itertools.chain(head[-1:], stream), labeller, jobs)


def _in_pool(
    items: Iterator[LineChunk | InputFailed], labeller: Labeller, jobs: int
) -> Iterator[Labelled | InputFailed]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spool = tempfile.TemporaryDirectory(prefix="streamer-classify-", dir=SPOOL_PARENT)
    pool = ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_start_worker,
        initargs=(labeller, spool.name),
    )
    pending: deque[Future[Labelled] | InputFailed] = deque()
    try:
        for item in items:
            if isinstance(item, InputFailed):
                pending.append(item)
            else:
                pending.append(pool.submit(_label_in_worker, *_spool_chunk(item, spool.name)))
            while len(pending) >= jobs * IN_FLIGHT_PER_JOB:
                yield _done(pending.popleft())
        while pending:
            yield _done(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        spool.cleanup()


def _done(item: Future[Labelled] | InputFailed) -> Labelled | InputFailed:
    return item if isinstance(item, InputFailed) else item.result()
