"""Complaint rates per provider and per tenant: rows a sink reads without joining anything.

KumoMTA's Feedback record names no egress pool or source (and an OOB no tenant of its own), so
a complaint's stats row never shares a key with the deliveries it is about: the rate needs the
deliveries summed over the other dimensions. So each of a worker's windows keeps, per provider
and per tenant, the delivered messages (``Delivery`` records) and complaints (Feedback records
whose category is ``complaint``, by type) of all its rows, updated from the rows that changed
(:class:`WindowRates`), and each update carries one *rate partial* per window and changed value,
keyed ``[window_start, dimension, value]`` (``streamer.analytics.windows.row_key``). It is
cumulative per instance (session and serial) like the stats partials, goes to the same
partials topic and is folded by the same rollup, so it keeps their guarantees (latest partial
per instance, exact in exactly-once mode, late records update it); the rollup writes the sum,
with ``complained`` and ``complaint_rate`` added, to ``stats_rates_topic``
(``streamer.worker.rollup``).

A dimension the stats leave out (``*``) has no rate rows: its one value would be the total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamer.analytics.windows import Counts, DimKey

#: The dimensions a complaint rate has (a Feedback record carries nothing else that matches
#: the deliveries), and the record type that counts as delivered.
RATE_DIMENSIONS = ("provider", "tenant")
DELIVERED = "Delivery"
LEFT_OUT = "*"

#: Approximate bytes (measured with tracemalloc, CPython 3.11) of a window's total per
#: (dimension, value) (its entry, key and list), and of a complaints map (a total's, or a row's
#: remembered one) once it has one; charged to the windows' byte ledger.
TOTAL_BYTES = 250
COMPLAINTS_BYTES = 250


def is_rate_row(row: Mapping[str, Any]) -> bool:
    return "dimension" in row


class WindowRates:
    """One window's delivered messages and complaints per provider and per tenant, kept up to
    date from its changed rows (:meth:`count`): an update costs per changed row, not per row
    of the window. ``positions``: where each rate dimension sits in a row's dimensions."""

    __slots__ = ("positions", "totals")

    def __init__(self, positions: Mapping[str, int]) -> None:
        self.positions = positions
        #: (dimension, value) -> [delivered, {complaint type: count}]
        self.totals: dict[tuple[str, str], list[Any]] = {}

    def count(
        self, changed: Iterable[DimKey], rows: Mapping[DimKey, Counts]
    ) -> tuple[set[tuple[str, str]], int]:
        """Add what the ``changed`` rows counted since their last call (counts only grow in a
        window instance: the row remembers what it had). Returns the (dimension, value) pairs
        they belong to and the bytes that added (``TOTAL_BYTES``, ``COMPLAINTS_BYTES``)."""
        touched: set[tuple[str, str]] = set()
        charged = 0
        for dims in changed:
            c = rows[dims]
            delivered = c.counts.get(DELIVERED, 0) - c.rated_delivered
            complaints = _grown(c.complaints, c.rated_complaints)
            for dim, i in self.positions.items():
                value = dims[i]
                if value == LEFT_OUT:
                    continue
                touched.add((dim, value))
                if not delivered and not complaints:
                    continue
                total = self.totals.get((dim, value))
                if total is None:
                    total = self.totals[dim, value] = [0, {}]
                    charged += TOTAL_BYTES
                total[0] += delivered
                mine = total[1]
                if complaints and not mine:
                    charged += COMPLAINTS_BYTES
                for kind, n in complaints.items():
                    mine[kind] = mine.get(kind, 0) + n
            c.rated_delivered += delivered
            if complaints:
                if c.rated_complaints is None:
                    charged += COMPLAINTS_BYTES
                c.rated_complaints = dict(c.complaints)
        return touched, charged

    def rows(
        self, start: int, end: int, values: Iterable[tuple[str, str]], extra: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """The rate partials of these (dimension, value) pairs (``extra``: the window's
        ``final`` and ``serial``); a pair with neither a delivery nor a complaint has none."""
        out = []
        for dim, value in sorted(values):
            total = self.totals.get((dim, value))
            if total is not None:
                out.append(
                    {
                        "window_start": start,
                        "window_end": end,
                        "dimension": dim,
                        "value": value,
                        "delivered": total[0],
                        "complaints": dict(total[1]),
                        **extra,
                    }
                )
        return out


def _grown(now: Mapping[str, int], before: Mapping[str, int] | None) -> dict[str, int]:
    if not now:
        return {}
    if before is None:
        return dict(now)
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}


def with_rate(row: dict[str, Any]) -> dict[str, Any]:
    """A summed rate row with its rate: ``complained`` (the complaints' total) per delivered
    message, null when nothing was delivered in the window (complaints come days later)."""
    complained = sum(row.get("complaints", {}).values())
    delivered = row.get("delivered", 0)
    row["complained"] = complained
    row["complaint_rate"] = complained / delivered if delivered else None
    return row
