"""Reading the inputs of ``streamer classify`` as chunks of whole lines, in input order.

A chunk is a few MB of one input's (decompressed) content cut after a newline, with the line
number of its first line and how its lines are to be read (response lines or JSON records,
forced or detected once per input from its first non-blank line). Reading whole blocks and
cutting them at the last newline costs far less than iterating line by line, and a chunk is
what a worker process is handed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from streamer.inputs import Input, InputError, read_blocks

#: Bytes per chunk: big enough that per-chunk costs (a hand-over to a worker process) vanish,
#: small enough that a few chunks in flight per process keep memory low.
CHUNK_BYTES = 4 << 20

#: The first byte that is not ASCII white space (what ``bytes.strip`` removes).
_NON_BLANK = re.compile(rb"[^ \t\n\r\x0b\x0c]")


@dataclass(frozen=True, slots=True)
class LineChunk:
    """Whole lines of one input: each ends with ``\\n`` except an input's unterminated last."""

    name: str
    first_line: int
    data: bytes
    as_lines: bool


@dataclass(frozen=True, slots=True)
class InputFailed:
    """An input that could not be read (further), in its place among the chunks."""

    message: str


def detect(data: bytes) -> bool | None:
    """Response lines (True) or JSON records (False), from the first non-blank line of
    ``data``: a JSONL log's starts with ``{`` (``[``: JSON, if not a record); None: all blank."""
    found = _NON_BLANK.search(data)
    if found is None:
        return None
    return data[found.start()] not in b"{["


class ChunkReader:
    """Iterates the chunks of ``inputs`` (and :class:`InputFailed` in place of unreadable
    ones). ``records_seen`` tells, once iterated, whether any input was read as records."""

    def __init__(
        self, inputs: Sequence[Input], forced: bool | None, chunk_bytes: int | None = None
    ) -> None:
        self.inputs = list(inputs)
        self.forced = forced
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self.records_seen = False

    def __iter__(self) -> Iterator[LineChunk | InputFailed]:
        for item in self.inputs:
            try:
                yield from self._chunks(item)
            except InputError as exc:
                yield InputFailed(str(exc))

    def _chunks(self, item: Input) -> Iterator[LineChunk]:
        mode = self.forced
        self.records_seen = self.records_seen or mode is False
        line = 1
        tail = b""
        for block in read_blocks(item, self.chunk_bytes):
            data = tail + block if tail else block
            cut = data.rfind(b"\n") + 1
            if not cut:  # no line ends in it yet: a very long line
                tail = data
                continue
            whole, tail = data[:cut], data[cut:]
            mode = self._mode(mode, whole)
            if mode is not None:
                yield LineChunk(item.name, line, whole, mode)
            line += whole.count(b"\n")
        if tail:
            mode = self._mode(mode, tail)
            if mode is not None:
                yield LineChunk(item.name, line, tail, mode)
        if mode is None:  # no non-blank line: counted as records, as it always has been
            self.records_seen = True

    def _mode(self, mode: bool | None, data: bytes) -> bool | None:
        if mode is None:
            mode = detect(data)
            self.records_seen = self.records_seen or mode is False
        return mode
