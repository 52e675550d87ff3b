"""Classifying one chunk of ``streamer classify`` input: the work of a worker process.

The output is byte for byte what classifying the chunk's lines one at a time gives (each
response line or record as one orjson-encoded JSON line), made cheaper by doing per chunk what
does not depend on the line's position: a response line is decoded, classified and encoded
once per distinct line of the chunk and the output assembled by lookups; a record's
classification object is built once per distinct response line of the chunk.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson

from streamer import native as native_path
from streamer.analytics.categories import CategoryTable
from streamer.analytics.providers import ProviderMatcher
from streamer.classifier import Classification, Classifier
from streamer.offline.chunks import LineChunk
from streamer.offline.native_records import NativeRecordRows
from streamer.records import (
    CLASSIFIABLE_TYPES,
    accept,
    classification_object,
    effective_type,
    feedback_classification,
    refusal_reason,
    response_line,
    set_classification,
    with_analytics,
)
from streamer.rules import Rule

if TYPE_CHECKING:  # imported where a --summary needs them: a leaner start
    from streamer.offline.summary import Summary, Tally

#: What ``bytes.strip`` removes: a line of only these is blank (neither record nor response).
_BLANK = " \t\n\r\x0b\x0c"
_NEWLINE = orjson.OPT_APPEND_NEWLINE
#: The output row of a response line that is not UTF-8 (also reported as skipped).
NOT_UTF8_ROW = orjson.dumps(
    {"line": None, "label": None, "rule": None, "evidence": None, "error": "not-utf8"},
    option=orjson.OPT_APPEND_NEWLINE,
)
#: Bytes of response lines per native call (see ``Labeller._lines_natively``).
NATIVE_BLOCK = 1 << 20
#: Distinct lines remembered across chunks (then forgotten all at once): offline, this memo is
#: the classifier's cache, holding the encoded result (a few hundred bytes a line).
MEMO_SIZE = 1 << 15


#: A piece of a chunk's output: bytes, or the native loop's rows of a block (written straight
#: from its rows where the output is a file descriptor, see :func:`write_output`).
Piece = bytes | native_path.Rows


@dataclass(slots=True)
class Labelled:
    """The result of one chunk: JSONL output in one piece or several, in order (or the file a
    worker process left it in), counts, the skipped lines (line number, reason) and, for
    ``--summary``, the chunk's counts."""

    name: str
    lines: int
    done: int
    output: bytes | list[Piece]
    skips: list[tuple[int, str]]
    tally: Tally | None
    spooled: str | None = None

    def write_to(self, out: BinaryIO) -> None:
        """Write the output to ``out`` (and remove its spool file)."""
        if self.spooled is None:
            write_output(out, self.output)
            return
        with open(self.spooled, "rb") as fh:
            os.unlink(self.spooled)
            _copy_file(fh, out)


def write_output(out: BinaryIO, output: bytes | list[Piece]) -> None:
    """Write a chunk's output to ``out``, in order. The native rows of a block go straight to
    ``out``'s file descriptor (after what ``out`` holds buffered), without one ``bytes`` of
    them in between; to a stream without one (a test's), as ``bytes``."""
    pieces = output if isinstance(output, list) else [output]
    fd = None if all(isinstance(p, bytes) for p in pieces) else _fileno(out)
    for piece in pieces:
        if isinstance(piece, bytes):
            out.write(piece)
        elif fd is None:
            out.write(bytes(piece))
        else:
            out.flush()  # what went to the buffer before goes first
            piece.write_to(fd)


def _copy_file(source: BinaryIO, out: BinaryIO) -> None:
    """Copy a worker's spool file to ``out``: inside the kernel (``sendfile``) where ``out`` is
    a file descriptor that takes it, else through a buffer."""
    fd = _fileno(out)
    if fd is not None:
        out.flush()
        offset, size = 0, os.fstat(source.fileno()).st_size
        try:
            while offset < size:
                sent = os.sendfile(fd, source.fileno(), offset, size - offset)
                if sent == 0:
                    break
                offset += sent
        except OSError as exc:
            if exc.errno not in _NO_SENDFILE or offset:
                raise
        if offset >= size:
            return
        source.seek(offset)
    shutil.copyfileobj(source, out, 1 << 20)


#: ``sendfile`` refusing these descriptors (nothing sent yet): the buffered copy is taken.
_NO_SENDFILE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def _fileno(out: BinaryIO) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def rule_json(rule: Rule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {"file": rule.file, "label": rule.label, "index": rule.index, "pattern": rule.pattern}


class Labeller:
    """Turns chunks into :class:`Labelled` results with one classifier (built once per
    process). ``summary`` (the run's, for its tables) makes it count instead of output."""

    def __init__(
        self,
        classifier: Classifier,
        *,
        max_bytes: int,
        explain: bool = False,
        summary: Summary | None = None,
        tables: tuple[CategoryTable, ProviderMatcher] | None = None,
        native: bool | None = None,
    ) -> None:
        """``native``: None takes the native loop where it is built (``streamer.native``),
        False the Python one (the reference), True requires the native one."""
        self.classifier = classifier
        #: With tables, a record's ``classification`` gains ``category`` and ``provider``, as
        #: the worker's output does with analytics on.
        self.tables = tables
        self.max_bytes = max_bytes
        self.explain = explain
        self.summary = summary
        self._encoded: dict[str, bytes] = {}  # response line -> its JSON line
        self._classified: dict[str, tuple[str, dict[str, Any]]] = {}  # -> (label, object)
        #: Response lines to rows in one native call per chunk (None: the Python loop).
        self._native_lines = native_path.line_labeller(self._row, MEMO_SIZE, NOT_UTF8_ROW, native)
        #: Records through the worker's native record path, one call per chunk (None: the
        #: Python loop; ``--explain`` and ``--summary`` always take it).
        self._native_records: NativeRecordRows | None = None
        if native_path.wanted(native) and not explain and summary is None:
            self._native_records = NativeRecordRows(
                classifier, self._classification, max_bytes, MEMO_SIZE, tables
            )

    def label(self, chunk: LineChunk) -> Labelled:
        return self._lines(chunk) if chunk.as_lines else self._records(chunk)

    def matches(self, text: str) -> list[dict[str, Any] | None]:
        return [rule_json(r) for r in self.classifier.explain(text).matches]

    # -- response lines

    def _lines(self, chunk: LineChunk) -> Labelled:
        if self._native_lines is not None and self.summary is None:
            return self._lines_natively(chunk, self._native_lines)
        data = chunk.data
        try:
            texts: list[str | None] = [*data.decode("utf-8").split("\n")]
        except UnicodeDecodeError:  # some line is not UTF-8: decode them one by one
            texts = [_utf8(raw) for raw in data.split(b"\n")]
        if data.endswith(b"\n"):
            texts.pop()
        if self.summary is not None:
            output, tally = b"", self._count_lines(texts, self.summary)
        else:
            output, tally = self._encode_lines(texts), None
        skips = [(chunk.first_line + i, "not-utf8") for i, t in enumerate(texts) if t is None]
        if self.summary is None:  # one output row per input line, a blank one too
            done = len(texts) - len(skips)
        else:  # a summary counts responses: blank lines are none
            unused = [t for t in dict.fromkeys(texts) if t is None or not t.strip(_BLANK)]
            done = len(texts) - (sum(texts.count(t) for t in unused) if unused else 0)
        return Labelled(chunk.name, len(texts), done, output, skips, tally)

    def _lines_natively(self, chunk: LineChunk, rows: native_path.LineLabeller) -> Labelled:
        """What :meth:`_lines` writes, byte for byte, from native calls: rows of lines seen
        before come from the native cache; a new line's row is :meth:`_encode_line`'s. Each
        block of :data:`NATIVE_BLOCK` bytes is one piece, its rows (a chunk's output is several
        times its size): written from the rows themselves (:func:`write_output`), and where a
        stream needs ``bytes``, small enough for the allocator to reuse their memory (one
        piece of tens of MB is fresh pages, faulted in and zeroed, every time)."""
        data, first_line = chunk.data, chunk.first_line
        pieces: list[Piece] = []
        skips: list[tuple[int, str]] = []
        lines = start = 0
        while True:
            cut = data.find(b"\n", start + NATIVE_BLOCK) + 1
            block = data[start:cut] if 0 < cut < len(data) else data[start:]
            output, count, not_utf8 = rows.label(block)
            pieces.append(output)
            skips += [(first_line + lines + i, "not-utf8") for i in not_utf8]
            lines += count
            start += len(block)
            if start >= len(data):
                return Labelled(chunk.name, lines, lines - len(skips), pieces, skips, None)

    def _encode_lines(self, texts: list[str | None]) -> bytes:
        memo = _bounded(self._encoded)
        encoded: dict[str | None, bytes] = {}
        for t in dict.fromkeys(texts):
            if t is None:  # a row all the same, so that output rows pair with input lines
                encoded[t] = NOT_UTF8_ROW
                continue
            out = memo.get(t)
            if out is None:
                out = memo[t] = self._row(t)
            encoded[t] = out
        return b"".join(map(encoded.__getitem__, texts))

    def _row(self, line: str) -> bytes:
        """The output row of one input line (without its newline)."""
        return self._encode_line(line.removesuffix("\r"))

    def _encode_line(self, text: str) -> bytes:
        result = self.classifier.classify_uncached(text)  # the memo is the cache
        obj: dict[str, Any] = {
            "line": text,
            "label": result.label,
            "rule": rule_json(result.rule),
            "evidence": result.evidence,
        }
        if self.explain:
            obj["matches"] = self.matches(text)
        return orjson.dumps(obj, option=_NEWLINE)

    def _count_lines(self, texts: list[str | None], summary: Summary) -> Tally:
        tally = _tally()
        classify = self.classifier.classify
        gap_of: dict[str | None, tuple[str, str]] = {}
        counts: dict[str | None, int] = {}
        for t in texts:
            counts[t] = counts.get(t, 0) + 1
        for t, n in counts.items():
            if t is None or not t.strip(_BLANK):
                continue
            text = t.removesuffix("\r")
            result = classify(text)
            gap = summary.count(tally, result.label, text, None, n, result.evidence)
            if gap is not None:
                gap_of[t] = gap
        if gap_of:
            tally.gaps = [gap_of[t] for t in texts if t in gap_of]
        return tally

    # -- KumoMTA records

    def _records(self, chunk: LineChunk) -> Labelled:
        raws = chunk.data.split(b"\n")
        open_last = bool(raws[-1])  # the input's last line, without a newline
        if not open_last:
            raws.pop()
        # KumoMTA's size limit counts the line's newline, as when reading line by line
        limit = self.max_bytes - 1
        tally = None if self.summary is None else _tally()
        memo = _bounded(self._classified)
        skips: list[tuple[int, str]] = []
        natively = self._native_records
        # each line's output row (without its newline); None: the Python path makes it, b"":
        # none (a blank or skipped line)
        rows: list[bytes | None] = (
            natively.rows(raws, open_last) if natively is not None else [None] * len(raws)
        )
        blanks = 0
        for i in [i for i, row in enumerate(rows) if row is None]:
            raw = raws[i]
            rows[i] = b""
            if not raw.strip():
                blanks += 1
                continue
            if open_last and i == len(raws) - 1:
                limit = self.max_bytes
            record = accept(raw, limit)
            if record is None:
                skips.append((chunk.first_line + i, refusal_reason(raw, limit)[0]))
                continue
            rtype = effective_type(record)  # a log hook's bookkeeping record: log_hook
            if rtype in CLASSIFIABLE_TYPES:
                self._enrich(record, memo, tally)
            elif tally is not None:
                tally.types[str(rtype)] += 1
            if tally is None:
                rows[i] = orjson.dumps(record)
        done = len(raws) - blanks - len(skips)
        output = b"\n".join(filter(None, rows)) if tally is None else b""
        return Labelled(
            chunk.name, len(raws), done, output + b"\n" if output else b"", skips, tally
        )

    def _enrich(
        self,
        record: dict[str, Any],
        memo: dict[str, tuple[str, dict[str, Any]]],
        tally: Tally | None,
    ) -> None:
        """``records.enrich`` (and ``--explain``'s matches) with one classification object
        per distinct response line (they are equal, so their JSON is too)."""
        line = response_line(record["response"])
        feedback = feedback_classification(record)
        if feedback is not None:
            made: tuple[str, dict[str, Any]] | None = self._classification(line, feedback)
        else:
            made = memo.get(line)
            if made is None:
                result = self.classifier.classify_uncached(line)  # the memo is the cache
                made = memo[line] = self._classification(line, result)
        assert made is not None
        label, obj = made
        if self.tables is not None:
            obj = self._with_analytics(record, label, obj)
        set_classification(record, label, obj)
        if tally is not None and self.summary is not None:
            gap = self.summary.count(tally, made[0], line, record, 1, made[1]["evidence"])
            if gap is not None:
                tally.gaps.append(gap)

    def _with_analytics(self, record: dict[str, Any], label: str, obj: dict[str, Any]) -> Any:
        """``obj`` plus the record's ``category`` and ``provider`` (the worker's keys, in its
        order: the same classification object for the same record)."""
        assert self.tables is not None
        categories, providers = self.tables
        code = record["response"].get("code")  # the table takes its class (code // 100)
        category = categories.category(label, code if type(code) is int else None)
        return with_analytics(obj, category, providers.match_record(record))

    def _classification(self, line: str, result: Classification) -> tuple[str, dict[str, Any]]:
        obj = classification_object(result, self.classifier.version)
        if self.explain:
            obj["matches"] = self.matches(line)
        return result.label, obj


def _tally() -> Tally:
    from streamer.offline.summary import Tally

    return Tally()


def _bounded(memo: dict[str, Any]) -> dict[str, Any]:
    if len(memo) > MEMO_SIZE:
        memo.clear()
    return memo


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
