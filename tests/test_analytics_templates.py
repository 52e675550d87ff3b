"""Response templates: variable parts masked, informative codes kept, equal causes collapse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.analytics.templates import MAX_LINE, template


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown (id 3F2A9C11D0)",
            "550 5.1.1 <{email}>: Recipient address rejected: User unknown (id {id})",
        ),
        (
            "421 4.7.0 [TSS04] Messages from 198.51.100.24 temporarily deferred; see "
            "https://postmaster.yahooinc.com/error-codes",
            "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred; see {url}",
        ),
        (
            "550 5.7.1 Client host [2001:db8::1] blocked using zen.spamhaus.org",
            "550 5.7.1 Client host [{ip}] blocked using {host}",
        ),
        (
            "451 Temporary local problem at 12:00:01, try again in 300 s (IPv6:2001:db8:1::5)",
            "451 Temporary local problem at {time}, try again in {n} s (IPv6:{ip})",
        ),
        (
            "550 5.7.1 rejected [BN8NAM11FT055.eop-nam11.prod.protection.outlook.com "
            "2024-05-01T12:00:00.000Z 08DC6A1B2C3D4E5F]",
            "550 5.7.1 rejected [{host} {time} {id}]",
        ),
        (
            "550-5.1.1 The account does not exist. 550 5.1.1 https://support.google.com/mail/?p=x "
            "d9443c01a7336-2a0e4c2b5f3si12345678plh.123 - gsmtp",
            "550-5.1.1 The account does not exist. 550 5.1.1 {url} {id}-{id}.{n} - gsmtp",
        ),
        (
            "554 message 6b1e1c2e-4f0a-4c1e-9d3a-0a1b2c3d4e5f refused, size 123456 > 100000",
            "554 message {id} refused, size {n} > {n}",
        ),
        (
            "KumoMTA internal: failed to connect to mx.example.org",
            "KumoMTA internal: failed to connect to {host}",
        ),
        ("250 ok", "250 ok"),
        ("", ""),
    ],
)
def test_realistic_lines(line: str, expected: str) -> None:
    assert template(line) == expected


def test_leading_codes_are_kept_even_when_they_look_like_numbers() -> None:
    assert template("452 4.2.2 mailbox full").startswith("452 4.2.2 ")
    assert template("550 5.7.606 Access denied, banned sending IP [203.0.113.9]") == (
        "550 5.7.606 Access denied, banned sending IP [{ip}]"
    )
    # an enhanced code later in the text stays, a dotted quad does not
    assert template("554 failed (#5.4.6) via 10.0.0.1") == "554 failed (#5.4.6) via {ip}"


def test_short_informative_codes_stay() -> None:
    assert (
        template("550 5.7.1 Blocked S3150 CON:B1 TSS04") == "550 5.7.1 Blocked S3150 CON:B1 TSS04"
    )


def test_lines_differing_only_in_variable_parts_collapse() -> None:
    lines = [
        f"550 5.1.1 <{u}@{d}>: no mailbox here by that name, queue {q} from [{ip}] at mx{n}.{d}"
        for u, d, q, ip, n in [
            ("alice", "example.com", "4F1E2D3C2B1A", "192.0.2.1", 1),
            ("bob.smith+tag", "mail.example.org", "A0B1C2D3E4F5", "198.51.100.77", 22),
            ("c", "x.co.uk", "0123abcd4567ef", "203.0.113.200", 3),
        ]
    ]
    assert len({template(line) for line in lines}) == 1


def test_different_causes_stay_apart() -> None:
    assert template("550 5.1.1 user unknown") != template("550 5.2.2 user unknown")
    assert template("550 5.7.1 blocked [TSS04]") != template("550 5.7.1 blocked [TSS09]")


def test_long_lines_are_cut() -> None:
    assert len(template("451 " + "x" * 10_000)) == MAX_LINE


@given(st.text(max_size=300))
def test_deterministic_and_idempotent(line: str) -> None:
    t = template(line)
    assert template(line) == t
    assert template(t) == t  # placeholders are never masked again
