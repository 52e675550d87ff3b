"""Complaint rates per provider and per tenant: rows a sink reads without joining anything.

KumoMTA's Feedback record names no egress pool or source (and an OOB no tenant of its own), so
a complaint's stats row never shares a key with the deliveries it is about: the rate needs the
deliveries summed over the other dimensions. A worker's windows hold every row of a window, so
with each update they also derive, per window and changed provider (and tenant), one *rate
partial*: the window's delivered messages (``Delivery`` records) and complaints (Feedback
records whose category is ``complaint``, by type) summed over all of that value's rows, keyed
``[window_start, dimension, value]`` (``streamer.analytics.windows.row_key``). It is
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

#: (dimension, value) -> [delivered, {complaint type: count}]
Totals = dict[tuple[str, str], tuple[int, dict[str, int]]]


def is_rate_row(row: Mapping[str, Any]) -> bool:
    return "dimension" in row


def window_totals(
    rows: Mapping[DimKey, Counts],
    positions: Mapping[str, int],
    changed: Iterable[DimKey],
) -> Totals:
    """Delivered and complaints summed over every row of a window, for each rate dimension's
    values among the ``changed`` rows' (the others' totals did not change). ``positions``:
    where each dimension sits in a row's dimensions."""
    wanted = {
        (dim, dims[i]) for dims in changed for dim, i in positions.items() if dims[i] != LEFT_OUT
    }
    totals: dict[tuple[str, str], tuple[int, dict[str, int]]] = {}
    if not wanted:
        return totals
    for dims, c in rows.items():
        for dim, i in positions.items():
            value = dims[i]
            if (dim, value) not in wanted:
                continue
            delivered, complaints = totals.get((dim, value), (0, {}))
            for kind, n in c.complaints.items():
                complaints[kind] = complaints.get(kind, 0) + n
            totals[dim, value] = (delivered + c.counts.get(DELIVERED, 0), complaints)
    return totals


def rate_rows(
    start: int, end: int, totals: Totals, extra: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rate partials of one window (``extra``: its ``final`` and ``serial``); a value with
    neither a delivery nor a complaint yet has none (counts only grow within an instance)."""
    out = []
    for (dim, value), (delivered, complaints) in sorted(totals.items()):
        if delivered or complaints:
            out.append(
                {
                    "window_start": start,
                    "window_end": end,
                    "dimension": dim,
                    "value": value,
                    "delivered": delivered,
                    "complaints": complaints,
                    **extra,
                }
            )
    return out


def with_rate(row: dict[str, Any]) -> dict[str, Any]:
    """A summed rate row with its rate: ``complained`` (the complaints' total) per delivered
    message, null when nothing was delivered in the window (complaints come days later)."""
    complained = sum(row.get("complaints", {}).values())
    delivered = row.get("delivered", 0)
    row["complained"] = complained
    row["complaint_rate"] = complained / delivered if delivered else None
    return row
