"""Rule files in KumoMTA's ``configure_bounce_classifier`` format, merged exactly as KumoMTA does.

A file holds a ``rules`` table mapping a label to a list of Rust-syntax regexes. Files are read
in the order given, labels in file order, patterns in list order, and every pattern gets the
next index; the lowest matching index wins. Loading is all-or-nothing: any error in any file
raises :class:`RulesError` (listing every problem found) and nothing is returned.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import json5

from streamer.resources import display_rule_file
from streamer.rust_regex import RustRegexError, Translation, translate

PREDEFINED_LABELS: tuple[str, ...] = (
    "InvalidRecipient",
    "DNSFailure",
    "SpamBlock",
    "SpamContent",
    "ProhibitedAttachment",
    "RelayDenied",
    "AutoReply",
    "TransientFailure",
    "Subscribe",
    "Unsubscribe",
    "ChallengeResponse",
    "BadConfiguration",
    "BadConnection",
    "BadDomain",
    "ContentRelated",
    "InactiveMailbox",
    "InvalidSender",
    "MessageExpired",
    "NoAnswerFromHost",
    "PolicyRelated",
    "ProtocolErrors",
    "QuotaIssues",
    "RelayingIssues",
    "RoutingErrors",
    "SpamRelated",
    "VirusRelated",
    "AuthenticationFailed",
    "TooManyRecipients",
    "Uncategorized",
)
UNCATEGORIZED = "Uncategorized"
SUPPORTED_EXTENSIONS = (".toml", ".json", ".json5")


class RulesError(Exception):
    """A rule set could not be loaded. ``errors`` holds one message per problem; ``warnings``
    what ``label_warnings`` would also say of the files (shown beside the errors)."""

    def __init__(self, errors: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.errors = list(errors)
        self.warnings = list(warnings)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Rule:
    index: int
    label: str
    pattern: str
    file: str


@dataclass
class RuleSet:
    rules: list[Rule]
    labels: list[str]
    files: list[str]
    version: str
    #: RE2 forms of ``rules`` (same order); built while loading so errors surface at load time.
    translations: list[Translation] = field(default_factory=list, repr=False)
    #: Position of each rule within its label's list in its file (for error messages).
    positions: list[int] = field(default_factory=list, repr=False)
    #: What loading noticed without failing (a label twice in a JSON file: the last list wins,
    #: as in KumoMTA); ``label_warnings`` reports them.
    notes: list[str] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.rules)

    def describe(self, index: int) -> str:
        """``file:line: label 'X' pattern #N 'text'``, the prefix of every per-pattern error."""
        r = self.rules[index]
        pos = self.positions[index] if index < len(self.positions) else -1
        real = next((f for f in self.files if display_rule_file(f) == r.file), r.file)
        listed = [x.pattern for x in self.rules if x.file == r.file and x.label == r.label]
        line = _Locator(real).pattern_line(r.label, listed, pos)
        return _where(r.file, line, r.label, pos, r.pattern)


def _syntax_error(path: str, kind: str, exc: Exception) -> str:
    msg = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    if line is None:
        m = re.search(r"at line (\d+)", msg) or re.search(r"^<string>:(\d+)", msg)
        if m:
            line = int(m.group(1))
    if isinstance(exc, json.JSONDecodeError):
        msg = exc.msg + f" (column {exc.colno})"
    elif msg.startswith("<string>:"):
        msg = msg.split(" ", 1)[1] if " " in msg else msg
    where = f"{path}:{line}" if line is not None else path
    return f"{where}: invalid {kind}: {msg}"


def _pairs_noting_duplicates(
    path: str, notes: list[str]
) -> Callable[[Iterable[tuple[str, Any]]], Any]:
    """A JSON ``object_pairs_hook``: a dict as usual (the last value of a repeated key wins, as
    in KumoMTA), noting every repeated key with the line it is repeated on."""
    where = _Locator(path)

    def hook(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        pairs = list(items)
        out = dict(pairs)
        if len(out) < len(pairs):
            seen: dict[str, int] = {}
            for key, _ in pairs:
                seen[key] = seen.get(key, 0) + 1
                if seen[key] > 1:
                    lines = where.key_lines(key)
                    line = lines[seen[key] - 1] if len(lines) >= seen[key] else None
                    notes.append(
                        f"{_at(path, line)}: {key!r} appears more than once in the same object; "
                        "only its last value counts (as in KumoMTA)"
                    )
        return out

    return hook


class _Locator:
    """Where a label and its patterns are written in a rules file, for error messages: the
    parsers keep no positions, so the text is searched (once per label), in order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._text: str | None = None
        self._read = False
        self._lines: dict[str, list[int | None]] = {}

    @property
    def text(self) -> str | None:
        """The file's text, read on first use (None when unreadable)."""
        if not self._read:
            self._read = True
            try:
                self._text = Path(self.path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self._text = None
        return self._text

    def _keys(self, key: str) -> list[int]:
        """Offsets just past each place ``key`` stands as a key: first on its line (TOML, JSON
        on several lines) or after ``{`` or ``,``, quoted or bare, then ``=`` or ``:``. A
        comment or a string that mentions the label does not count."""
        if self.text is None:
            return []
        name = r"(?:rules\.)?([\"']?)" + re.escape(key) + r"\1"
        found = re.finditer(r"(?m)(?:^[ \t]*|[{,][ \t]*)" + name + r"[ \t]*[=:]", self.text)
        return [m.end() for m in found]

    def key_lines(self, key: str) -> list[int]:
        text = self.text or ""
        return [text.count("\n", 0, end) + 1 for end in self._keys(key)]

    def pattern_line(self, label: str, patterns: Sequence[object], pos: int) -> int | None:
        """The line of ``patterns[pos]`` (the label's list as loaded); the label's line when
        the pattern's text is not found."""
        if label not in self._lines:
            self._lines[label] = self._walk(label, patterns)
        lines = self._lines[label]
        return lines[pos] if 0 <= pos < len(lines) else None

    def _walk(self, label: str, patterns: Sequence[object]) -> list[int | None]:
        keys = self._keys(label)
        if self.text is None or not keys:
            return [None] * len(patterns)
        text, cursor = self.text, keys[-1]  # a repeated JSON key: its last list counts
        key_line = text.count("\n", 0, cursor) + 1
        out: list[int | None] = []
        for pattern in patterns:
            line: int | None = key_line
            if isinstance(pattern, str) and pattern:
                forms = {pattern, json.dumps(pattern, ensure_ascii=False)[1:-1]}
                hits = [(i, len(f)) for f in forms if (i := text.find(f, cursor)) >= 0]
                if hits:
                    at, size = min(hits)
                    line = text.count("\n", 0, at) + 1
                    cursor = at + size  # the next pattern is written after this one
            out.append(line)
        return out


def _at(path: str, line: int | None) -> str:
    return f"{path}:{line}" if line else path


def _parse_file(path: str, data: bytes, notes: list[str] | None = None) -> Any:
    suffix = Path(path).suffix.lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError([f"{path}: not valid UTF-8 (byte {exc.start})"]) from None
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        hook = _pairs_noting_duplicates(path, notes if notes is not None else [])
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=hook)
        return json5.loads(text, object_pairs_hook=hook)
    except ValueError as exc:
        kind = {".toml": "TOML", ".json": "JSON", ".json5": "JSON5"}[suffix]
        raise RulesError([_syntax_error(path, kind, exc)]) from None


def _where(name: str, line: int | None, label: str, pos: int, pattern: object) -> str:
    """``file:line: label 'X' pattern #N 'text'``: N counts from 1, the text as written."""
    text = "'" + pattern.replace("\n", "\\n") + "'" if isinstance(pattern, str) else repr(pattern)
    return f"{_at(name, line)}: label {label!r} pattern #{pos + 1} {text}"


def _read_table(
    path: str, digest: Any, errors: list[str], notes: list[str]
) -> dict[Any, Any] | None:
    """A rules file's ``rules`` table (the file's bytes go into ``digest``); None on errors."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        errors.append(
            f"{path}: unsupported rules file extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    digest.update(data)
    try:
        doc = _parse_file(path, data, notes)
    except RulesError as exc:
        errors.extend(exc.errors)
        return None
    if not isinstance(doc, dict) or "rules" not in doc:
        errors.append(f"{path}: missing the 'rules' table (label = [patterns...])")
        return None
    table = doc["rules"]
    if not isinstance(table, dict):
        errors.append(f"{path}: 'rules' must be a table mapping labels to lists of patterns")
        return None
    return table


def load_rules(files: Iterable[str | PathLike[str]]) -> RuleSet:
    """Load, merge and validate rule files; raises :class:`RulesError` on any problem."""
    paths = [str(f) for f in files]
    if not paths:
        raise RulesError(["no rule files given"])
    errors: list[str] = []
    rules: list[Rule] = []
    translations: list[Translation] = []
    positions: list[int] = []
    labels: dict[str, None] = {}
    label_files: dict[str, str] = {}  # label -> the first file that lists it
    notes: list[str] = []
    digest = hashlib.sha256()
    for path in paths:
        table = _read_table(path, digest, errors, notes)
        shown = display_rule_file(path) if table else path  # rules/<name> for shipped files
        locate = _Locator(path)  # reads the file only for an error

        for label, patterns in (table or {}).items():
            if not isinstance(label, str) or not label:
                errors.append(f"{path}: label {label!r}: labels must be non-empty strings")
                continue
            if not isinstance(patterns, list):
                lines = locate.key_lines(label)
                errors.append(
                    f"{_at(path, lines[-1] if lines else None)}: label {label!r}: expected a "
                    f"list of pattern strings, got {type(patterns).__name__}"
                )
                continue
            labels.setdefault(label, None)
            label_files.setdefault(label, path)
            for pos, pattern in enumerate(patterns):
                # The error prefix is only formatted for a failing pattern (10,000-rule sets).
                if not isinstance(pattern, str):
                    line = locate.pattern_line(label, patterns, pos)
                    errors.append(
                        f"{_where(path, line, label, pos, pattern)}: patterns must be strings"
                    )
                    continue
                try:
                    tr = translate(pattern)
                except RustRegexError as exc:
                    line = locate.pattern_line(label, patterns, pos)
                    errors.append(f"{_where(path, line, label, pos, pattern)}: {exc}")
                    continue
                rules.append(Rule(len(rules), label, pattern, shown))
                translations.append(tr)
                positions.append(pos)
    if errors:
        raise RulesError(errors, _warnings(label_files, notes))
    return RuleSet(
        rules=rules,
        labels=list(labels),
        files=paths,
        version=digest.hexdigest()[:12],
        translations=translations,
        positions=positions,
        notes=notes,
    )


def _closest_predefined(label: str) -> str | None:
    """The predefined label ``label`` most likely misspells, or None for a deliberate name."""
    if label in PREDEFINED_LABELS:
        return None
    folded = {p.casefold(): p for p in PREDEFINED_LABELS}
    if label.casefold() in folded:  # 'invalidrecipient'
        return folded[label.casefold()]
    close = difflib.get_close_matches(label, PREDEFINED_LABELS, n=1, cutoff=0.85)
    return close[0] if close else None


def label_warnings(ruleset: RuleSet) -> list[str]:
    """One message per label that looks like a misspelled predefined label (``InvalidRecipent``).

    Custom labels are allowed (KumoMTA accepts any name), so these are warnings; a name far from
    every predefined label is taken as deliberate and not reported.
    """
    real = {display_rule_file(f): f for f in ruleset.files}
    first_file: dict[str, str] = {}
    for rule in ruleset.rules:
        first_file.setdefault(rule.label, real.get(rule.file, rule.file))
    for label in ruleset.labels:  # a label with an empty list has no rule to say where
        first_file.setdefault(label, ", ".join(ruleset.files))
    return _warnings(first_file, ruleset.notes)


def _warnings(label_files: dict[str, str], notes: Sequence[str]) -> list[str]:
    """``notes`` and a warning per misspelled predefined label, at the line it is written on
    in the first file that lists it."""
    warnings = list(notes)
    for label, path in label_files.items():
        closest = _closest_predefined(label)
        if closest is not None:
            lines = _Locator(path).key_lines(label)
            where = _at(display_rule_file(path), lines[0] if lines else None)
            warnings.append(
                f"{where}: label {label!r} is not a predefined label; did you mean {closest!r}? "
                "(custom labels are allowed)"
            )
    return warnings
