"""Which mailbox provider (or security gateway) a record went to: MX host first, domain second.

Matching walks a host's suffixes from the longest ("mx.eu.example.com", "eu.example.com", ...)
through one dict, so a lookup is a handful of dict gets whatever the table size; results are
memoised in a bounded LRU keyed by (site, peer name, recipient domain), which repeat heavily.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from os import PathLike
from typing import Any

from streamer.analytics.tables import TableError, read_toml
from streamer.cache import LRUCache
from streamer.feedback import complained_about
from streamer.records import first_recipient

OTHER = "other"
#: Record types written on the receiving side: their peer is the injecting client, not an MX.
INBOUND_TYPES = frozenset({"Reception", "Rejection"})

#: "(alt1|alt2)?.gmail-smtp-in.l.google.com": KumoMTA factors the MX hosts of a site into one
#: name with a single alternation group; the group may be optional.
_GROUP = re.compile(r"^(?P<pre>[^()]*)\((?P<alts>[^()]*)\)(?P<opt>\??)(?P<post>[^()]*)$")
_LABEL_OK = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def site_hosts(site: str) -> list[str]:
    """The MX host names inside a KumoMTA ``site`` (``source->`` prefix and alternation
    expanded), lower-cased, without trailing dots; ``[]`` when nothing host-like is left."""
    mx = site.rpartition("->")[2].strip().lower()
    if not mx:
        return []
    m = _GROUP.match(mx)
    if m is None:
        candidates = mx.split("|")
    else:
        pre, post = m["pre"], m["post"]
        candidates = [pre + alt + post for alt in m["alts"].split("|")]
        if m["opt"]:
            candidates.insert(0, pre + post)
    hosts: list[str] = []
    for c in candidates:
        host = c.strip().strip(".")
        if host and host not in hosts:
            hosts.append(host)
    return hosts


def _normalise_suffix(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise TableError(f"{where}: {value!r} is not a string")
    s = value.strip().lower().lstrip("*").strip(".")
    if not _LABEL_OK.match(s):
        raise TableError(f"{where}: {value!r} is not a host or domain suffix")
    return s


class ProviderMatcher:
    """Suffix tables for MX hosts and recipient domains, and a cached :meth:`match`."""

    def __init__(
        self, mx: Mapping[str, str], domains: Mapping[str, str], cache_size: int = 4096
    ) -> None:
        self.mx = dict(mx)
        self.domains = dict(domains)
        self.names: dict[str, str] = {}
        self._cache: LRUCache[tuple[str | None, str | None, str | None], str] = LRUCache(cache_size)

    @classmethod
    def from_files(
        cls, paths: Iterable[str | PathLike[str]], cache_size: int = 4096
    ) -> ProviderMatcher:
        """Load provider tables in order; a later file's suffix overrides an earlier one's.

        A suffix listed twice inside one file (for two providers) is an error naming both.
        """
        mx: dict[str, str] = {}
        domains: dict[str, str] = {}
        names: dict[str, str] = {}
        for path in paths:
            name = str(path)
            doc = read_toml(path)
            unknown = sorted(set(doc) - {"providers"})
            if unknown:
                raise TableError(f"{name}: {unknown[0]}: unknown table (use [providers.<id>])")
            providers = doc.get("providers", {})
            if not isinstance(providers, Mapping):
                raise TableError(f"{name}: providers: must be a table of [providers.<id>] tables")
            seen: dict[tuple[str, str], str] = {}
            for pid, entry in providers.items():
                where = f"{name}: providers.{pid}"
                if pid == OTHER or not _LABEL_OK.match(pid):
                    raise TableError(f"{where}: provider ids are lower-case [a-z0-9_-] (not other)")
                if not isinstance(entry, Mapping):
                    raise TableError(f"{where}: expected a table with mx / domains / name")
                bad = sorted(set(entry) - {"mx", "domains", "name"})
                if bad:
                    raise TableError(f"{where}.{bad[0]}: unknown key (use mx, domains, name)")
                names[pid] = str(entry.get("name", pid))
                for kind, table in (("mx", mx), ("domains", domains)):
                    values = entry.get(kind, [])
                    if not isinstance(values, list):
                        raise TableError(f"{where}.{kind}: must be a list of strings")
                    for i, raw in enumerate(values):
                        suffix = _normalise_suffix(raw, f"{where}.{kind}[{i}]")
                        other = seen.get((kind, suffix))
                        if other is not None and other != pid:
                            raise TableError(
                                f"{where}.{kind}[{i}]: {suffix!r} is also listed by "
                                f"providers.{other}"
                            )
                        seen[(kind, suffix)] = pid
                        table[suffix] = pid
        matcher = cls(mx, domains, cache_size)
        matcher.names = names
        return matcher

    @classmethod
    def shipped(cls, cache_size: int = 4096) -> ProviderMatcher:
        from streamer.analytics import shipped_providers_file

        return cls.from_files([shipped_providers_file()], cache_size)

    @staticmethod
    def _lookup(table: dict[str, str], host: str) -> str | None:
        # "a.b.example.com" -> "a.b.example.com", "b.example.com", "example.com", "com":
        # longest suffix first, and only on dot boundaries.
        while True:
            hit = table.get(host)
            if hit is not None:
                return hit
            dot = host.find(".")
            if dot < 0:
                return None
            host = host[dot + 1 :]

    def match_uncached(self, site: str | None, peer_name: str | None, domain: str | None) -> str:
        if site:
            for host in site_hosts(site):
                hit = self._lookup(self.mx, host)
                if hit is not None:
                    return hit
        if peer_name:
            hit = self._lookup(self.mx, peer_name.strip().rstrip(".").lower())
            if hit is not None:
                return hit
        if domain:
            hit = self._lookup(self.domains, domain)
            if hit is not None:
                return hit
        return OTHER

    def match(self, site: str | None, peer_name: str | None, recipient: str | None) -> str:
        """The provider id for a record, or ``"other"``. ``recipient`` may be an address or a
        bare domain; only its domain part matters (and is the cache key)."""
        domain = recipient_domain(recipient) if recipient else None
        key = (site or None, peer_name or None, domain)
        cache = self._cache
        hit = cache.lookup(key)
        if hit is not None:
            cache.hits += 1
            return hit
        cache.misses += 1
        result = self.match_uncached(key[0], key[1], domain)
        cache.put(key, result)
        return result

    def cache_stats(self) -> dict[str, int]:
        return self._cache.stats()

    def match_record(self, record: Mapping[str, Any]) -> str:
        """:meth:`match` on a record's clues (:func:`record_clues`)."""
        site, peer_name, recipient = record_clues(record)
        return self.match(site, peer_name, recipient)


def recipient_domain(address: str) -> str | None:
    """The domain of an address (or a bare domain) as the tables list domains: no angle
    brackets, spaces or trailing dot, lower case."""
    return address.rpartition("@")[2].strip().strip("<>").strip().rstrip(".").lower() or None


def record_clues(record: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(site, receiving MX name, recipient address) of a KumoMTA record, tried in that order.

    An inbound record's peer (Reception, Rejection) is the injecting client, not a receiving
    MX; a Feedback report's provider is the complainer's, whose address is in the report (the
    record's own ``recipient`` is the feedback mailbox). The recipient is
    ``records.first_recipient``: a multi-recipient transaction's first (they share one
    destination domain), a ``Rejection`` of ``RCPT TO``'s refused address, none for a log
    hook's bookkeeping record.
    The worker's cached ``Analyzer.provider`` reads the same clues.
    """
    site = record.get("site")
    rtype = record.get("type")
    peer_name = None
    if rtype == "Feedback":
        recipient: Any = complained_about(record)[0]
    else:
        peer = record.get("peer_address")
        if isinstance(peer, Mapping) and rtype not in INBOUND_TYPES:
            name = peer.get("name")
            peer_name = name if isinstance(name, str) and name else None
        recipient = first_recipient(record)
    return (
        site if isinstance(site, str) and site else None,
        peer_name,
        recipient if isinstance(recipient, str) and recipient else None,
    )
