"""Bounce categories (hard, soft, block, admin, undetermined, complaint) from label + SMTP class.

The table is data (``rules/categories.toml``) so operators can change a label's meaning without
a release. Lookups are a dict get plus an integer division: cheap enough for every record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

from streamer.analytics.tables import TableError, read_toml

HARD = "hard"
SOFT = "soft"
BLOCK = "block"
ADMIN = "admin"
UNDETERMINED = "undetermined"
COMPLAINT = "complaint"
CATEGORIES: tuple[str, ...] = (HARD, SOFT, BLOCK, ADMIN, UNDETERMINED, COMPLAINT)

_KEYS = frozenset({"category", "action", "on_4xx", "on_5xx"})

#: What to do about a category, when a reply class moved a label away from its own category
#: (a 4xx ``InvalidRecipient`` is ``soft``: its label's "suppress the address" would be wrong).
CATEGORY_ACTIONS: dict[str, str] = {
    HARD: "suppress the address",
    SOFT: "retry later: the problem is temporary and at the recipient's side",
    BLOCK: "fix the sending side (reputation, authentication, policy, content)",
    ADMIN: "an operator acted: nothing to do for the recipient",
    UNDETERMINED: "read the response; write a rule if it recurs",
    COMPLAINT: "stop mailing the address",
}


@dataclass(frozen=True, slots=True)
class Entry:
    category: str
    action: str = ""
    on_4xx: str | None = None
    on_5xx: str | None = None

    def resolve(self, code: int | None) -> str:
        if code is not None:
            klass = code // 100
            if klass == 4 and self.on_4xx is not None:
                return self.on_4xx
            if klass == 5 and self.on_5xx is not None:
                return self.on_5xx
        return self.category


#: Used when no file defines ``[default]``: a label nobody categorised must not suppress
#: addresses (``hard`` is destructive), but a 4xx is temporary by definition.
BUILTIN_DEFAULT = Entry(UNDETERMINED, "add the label to a categories file", on_4xx=SOFT)


def _entry(raw: object, where: str, inherited: Entry | None) -> Entry:
    if not isinstance(raw, Mapping):
        raise TableError(f"{where}: expected a table with category / action / on_4xx / on_5xx")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise TableError(f"{where}.{unknown[0]}: unknown key (use {', '.join(sorted(_KEYS))})")
    if "category" not in raw:
        raise TableError(f"{where}.category: missing")
    values: dict[str, Any] = {}
    for key in ("category", "on_4xx", "on_5xx"):
        if key in raw:
            value = raw[key]
            if value not in CATEGORIES:
                raise TableError(
                    f"{where}.{key}: {value!r} is not a category ({', '.join(CATEGORIES)})"
                )
            values[key] = value
    action = raw.get("action", inherited.action if inherited else "")
    if not isinstance(action, str):
        raise TableError(f"{where}.action: must be a string")
    return Entry(action=action, **values)


class CategoryTable:
    """Label -> :class:`Entry`. Build with :meth:`load` (files) or the constructor (tests)."""

    __slots__ = ("default", "entries", "files")

    def __init__(
        self,
        entries: Mapping[str, Entry],
        default: Entry = BUILTIN_DEFAULT,
        files: Iterable[str] = (),
    ) -> None:
        self.entries: dict[str, Entry] = dict(entries)
        self.default = default
        self.files = list(files)

    @classmethod
    def load(cls, paths: Iterable[str | PathLike[str]]) -> CategoryTable:
        """Merge category files in order; a later file's entry replaces the earlier one for
        that label (its ``action`` is inherited when the later entry has none).

        Raises :class:`TableError` naming the file and key of the first bad entry.
        """
        entries: dict[str, Entry] = {}
        default = BUILTIN_DEFAULT
        names: list[str] = []
        for path in paths:
            name = str(path)
            names.append(name)
            doc = read_toml(path)
            unknown = sorted(set(doc) - {"default", "labels"})
            if unknown:
                raise TableError(f"{name}: {unknown[0]}: unknown table (use [labels.X], [default])")
            if "default" in doc:
                default = _entry(doc["default"], f"{name}: default", default)
            labels = doc.get("labels", {})
            if not isinstance(labels, Mapping):
                raise TableError(f"{name}: labels: must be a table of [labels.<Label>] tables")
            for label, raw in labels.items():
                entries[label] = _entry(raw, f"{name}: labels.{label}", entries.get(label))
        return cls(entries, default, names)

    @classmethod
    def shipped(cls) -> CategoryTable:
        from streamer.analytics import shipped_categories_file

        return cls.load([shipped_categories_file()])

    def category(self, label: str, code: int | None = None) -> str:
        """The category of ``label`` for an SMTP reply ``code`` (None: no code known)."""
        return self.entries.get(label, self.default).resolve(code)

    def action(self, label: str, code: int | None = None) -> str:
        """The recommended action for ``label`` (for an SMTP reply ``code``): the label's own,
        or the category's when the reply class gives the label another category."""
        entry = self.entries.get(label, self.default)
        category = entry.resolve(code)
        if category != entry.category:
            return CATEGORY_ACTIONS.get(category, entry.action)
        return entry.action

    def __contains__(self, label: object) -> bool:
        return label in self.entries

    def labels(self) -> list[str]:
        return list(self.entries)
