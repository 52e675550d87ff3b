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
from collections.abc import Callable, Iterable, Iterator
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


def _complete() -> None:
    """Plain and gzip streams: nothing to check at their end (gzip checks its own)."""


def _open_stream(
    name: str, raw: IO[bytes]
) -> tuple[IO[bytes], type[Exception], Callable[[], None]]:
    """``raw`` decompressed when it starts with a gzip or zstd magic number, the
    decompressor's own error type (gzip raises ``OSError`` / ``EOFError`` itself), and what
    to call once the stream is read to its end (raises ``EOFError`` for a truncated zstd)."""
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
    kind = compression(buffered.peek(4)[:4])
    if kind == "gzip":
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb")), _NoError, _complete
    if kind == "zstd":
        try:
            import zstandard  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise InputError(
                f"{name}: zstd-compressed; install the 'zstandard' package, or pipe it through "
                f"`zstd -dc {name}`"
            ) from None
        reader = _ZstdFrames(buffered, zstandard.ZstdDecompressor())
        stream = cast(IO[bytes], io.BufferedReader(reader, 1 << 17))
        return stream, zstandard.ZstdError, reader.check_complete
    return buffered, _NoError, _complete


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of consecutive zstd frames, in bounded memory.

    zstandard's own stream reader ends quietly where the input ends inside a frame (a
    segment still being written, or cut short): the lines after the cut would vanish without
    a word. Here the end of such an input sets ``truncated``; the reader's user raises after
    the last bytes were read (``check_complete``), so what was readable still comes out.
    """

    #: Compressed bytes read at once, and fed to the decompressor at once: a slice's output
    #: is bounded (a zstd block expands to at most 128 KiB), whatever the compression ratio.
    CHUNK = 1 << 17
    SLICE = 1 << 10

    def __init__(self, raw: IO[bytes], decompressor: Any) -> None:
        self._raw = raw
        self._decompressor = decompressor
        self._frame: Any = None  # the decompression object of the current frame
        self._in = memoryview(b"")  # compressed bytes read, not yet decompressed
        self._carry = b""  # what the last slice held beyond its frame's end
        self._out = memoryview(b"")
        self.truncated = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._out:
            piece: bytes | memoryview
            if self._carry:
                piece, self._carry = self._carry, b""
            else:
                if not self._in:
                    chunk = self._raw.read(self.CHUNK)
                    if not chunk:
                        self.truncated = self._frame is not None and not self._frame.eof
                        return 0
                    self._in = memoryview(chunk)
                piece, self._in = self._in[: self.SLICE], self._in[self.SLICE :]
            if self._frame is None or self._frame.eof:
                self._frame = self._decompressor.decompressobj()
            self._out = memoryview(self._frame.decompress(piece))
            if self._frame.eof:
                self._carry = self._frame.unused_data
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def check_complete(self) -> None:
        if self.truncated:
            raise EOFError("zstd stream ends inside a frame (truncated?)")


def open_input(name: str, raw: IO[bytes]) -> Iterable[bytes]:
    """The lines of ``raw``, decompressed when it starts with a gzip or zstd magic number.

    Decompression errors surface while iterating (``OSError`` / ``EOFError``)."""
    stream, error, complete = _open_stream(name, raw)
    return stream if error is _NoError else _reported(stream, error, complete)


def _blocks(name: str, raw: IO[bytes], size: int) -> Iterator[bytes]:
    stream, error, complete = _open_stream(name, raw)
    read = stream.read
    return _reported(iter(lambda: read(size), b""), error, complete)


def _reported(
    items: Iterable[bytes], error: type[Exception], complete: Callable[[], None]
) -> Iterator[bytes]:
    # a corrupt zstd frame raises zstandard's own error type: report it like gzip's (OSError)
    try:
        yield from items
    except error as exc:
        raise OSError(f"zstd: {exc}") from None
    complete()  # EOFError after the last lines of a truncated input


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
