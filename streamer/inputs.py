"""Reading KumoMTA's log files: plain, gzip or zstd JSON lines, from files, folders, globs, stdin.

KumoMTA writes its logs as zstd-compressed JSON-lines segments in a folder; operators also have
gzip'ed or plain copies. Every input name given to a command expands to files
(:func:`expand_inputs`): ``-`` is stdin, a folder means every regular file directly inside it
(sorted by name, hidden files skipped), a name with ``*``, ``?`` or ``[`` is a glob (sorted), and
anything else is a file. :func:`open_input` picks the decompression from the content's magic
number, not the file name.
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
STDIN = "-"


class InputError(Exception):
    """An input cannot be read; the message is one line naming the input."""


@dataclass(frozen=True, slots=True)
class Input:
    """One file to read (``path`` None: stdin), or why a name gave nothing (``error``)."""

    name: str
    path: Path | None = None
    error: str | None = None


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def expand_inputs(names: Iterable[str]) -> list[Input]:
    """The inputs ``names`` stand for, in order (no names: stdin)."""
    out: list[Input] = []
    for name in list(names) or [STDIN]:
        if name == STDIN:
            out.append(Input("<stdin>"))
        elif os.path.isdir(name):
            files = sorted(
                p for p in Path(name).iterdir() if p.is_file() and not p.name.startswith(".")
            )
            out.extend(Input(str(p), p) for p in files)
            if not files:
                out.append(Input(name, error="empty directory"))
        elif _is_glob(name) and not os.path.exists(name):
            matches = sorted(m for m in glob.glob(name) if os.path.isfile(m))
            out.extend(Input(m, Path(m)) for m in matches)
            if not matches:
                out.append(Input(name, error="no file matches this pattern"))
        elif os.path.isfile(name):
            out.append(Input(name, Path(name)))
        else:
            out.append(Input(name, error="No such file or directory"))
    return out


def compression(head: bytes) -> str | None:
    """``gzip``, ``zstd`` or None (plain) from the first bytes of a stream."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _NoError(Exception):
    """Never raised: the decompression error type of plain and gzip streams (OSError)."""


def _open_stream(name: str, raw: IO[bytes]) -> tuple[IO[bytes], type[Exception]]:
    """``raw`` decompressed when it starts with a gzip or zstd magic number, and the
    decompressor's own error type (gzip raises ``OSError`` / ``EOFError`` itself)."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
    kind = compression(buffered.peek(4)[:4])
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb")), _NoError
    if kind == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise InputError(
                f"{name}: zstd-compressed; install the 'zstandard' package, or pipe it through "
                f"`zstd -dc {name}`"
            ) from None
        reader = _ZstdFrames(buffered, zstandard.ZstdDecompressor())
        return cast(IO[bytes], io.BufferedReader(reader, 1 << 17)), zstandard.ZstdError
    return buffered, _NoError


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of consecutive zstd frames; ``EOFError`` when the input ends
    inside a frame (a segment still being written, or cut short), where zstandard's own
    stream reader would just stop: the lines after the cut must not vanish silently. The
    error comes on the read after the last bytes (an end of file first), so that a buffered
    read returns what was decompressed before it."""

    CHUNK = 1 << 17

    def __init__(self, raw: IO[bytes], decompressor: Any) -> None:
        self._raw = raw
        self._decompressor = decompressor
        self._frame: Any = None  # the decompression object of the current frame
        self._out = memoryview(b"")
        self._truncated = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            chunk = self._raw.read(self.CHUNK)
            if not chunk:
                if self._truncated:
                    raise EOFError("zstd stream ends inside a frame (truncated?)")
                self._truncated = self._frame is not None and not self._frame.eof
                return 0
            out = bytearray()
            while chunk:
                if self._frame is None or self._frame.eof:
                    self._frame = self._decompressor.decompressobj()
                out += self._frame.decompress(chunk)
                chunk = self._frame.unused_data if self._frame.eof else b""
            self._out = memoryview(out)
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def open_input(name: str, raw: IO[bytes]) -> Iterable[bytes]:
    """The lines of ``raw``, decompressed when it starts with a gzip or zstd magic number.

    Decompression errors surface while iterating (``OSError`` / ``EOFError``)."""
    stream, error = _open_stream(name, raw)
    return stream if error is _NoError else _reported(stream, error)


def _blocks(name: str, raw: IO[bytes], size: int) -> Iterator[bytes]:
    stream, error = _open_stream(name, raw)
    read = stream.read
    return _reported(iter(lambda: read(size), b""), error)


def _reported(items: Iterable[bytes], error: type[Exception]) -> Iterator[bytes]:
    # a corrupt zstd frame raises zstandard's own error type: report it like gzip's (OSError)
    try:
        yield from items
    except error as exc:
        raise OSError(f"zstd: {exc}") from None


def read_lines(item: Input) -> Iterator[bytes]:
    """The (decompressed) lines of one input; ``InputError`` names it when it cannot be read."""
    if item.error is not None:
        raise InputError(f"{item.name}: cannot read: {item.error}")
    try:
        if item.path is None:
            yield from open_input(item.name, sys.stdin.buffer)
            return
        with open(item.path, "rb") as fh:
            yield from open_input(item.name, fh)
    except (OSError, EOFError) as exc:  # unreadable, or a corrupt / truncated archive
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(f"{item.name}: cannot read: {reason}") from None


def read_blocks(item: Input, size: int) -> Iterator[bytes]:
    """The (decompressed) content of one input in blocks of about ``size`` bytes (lines may
    span blocks); ``InputError`` names the input when it cannot be read."""
    if item.error is not None:
        raise InputError(f"{item.name}: cannot read: {item.error}")
    try:
        if item.path is None:
            yield from _blocks(item.name, sys.stdin.buffer, size)
            return
        with open(item.path, "rb") as fh:
            yield from _blocks(item.name, fh, size)
    except (OSError, EOFError) as exc:  # unreadable, or a corrupt / truncated archive
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise InputError(f"{item.name}: cannot read: {reason}") from None


def is_plain_file(path: Path) -> bool:
    """True for an uncompressed file (its lines can be counted up front for progress)."""
    with open(path, "rb") as fh:
        return compression(fh.read(4)) is None
