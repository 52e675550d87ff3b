"""Mailbox providers: site parsing, suffix matching on label boundaries, precedence, caching."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.analytics.providers import ProviderMatcher, site_hosts
from streamer.analytics.tables import TableError
from streamer.devkit.sample import bundled_sample_path

SAMPLE = bundled_sample_path()


@pytest.fixture(scope="module")
def matcher() -> ProviderMatcher:
    return ProviderMatcher.shipped()


def test_site_hosts() -> None:
    assert site_hosts("ip1->(alt1|alt2)?.gmail-smtp-in.l.google.com") == [
        "gmail-smtp-in.l.google.com",
        "alt1.gmail-smtp-in.l.google.com",
        "alt2.gmail-smtp-in.l.google.com",
    ]
    assert site_hosts("gmail-smtp-in.l.google.com") == ["gmail-smtp-in.l.google.com"]
    assert site_hosts("(mx1|mx2).Example.COM.") == ["mx1.example.com", "mx2.example.com"]
    assert site_hosts("src->") == []
    assert site_hosts("") == []


@pytest.mark.parametrize(
    ("site", "peer", "recipient", "expected"),
    [
        ("pool-ip3->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com", None, "a@x.com", "google"),
        ("aspmx.l.google.com", None, None, "google"),
        ("", "ASPMX2.GOOGLEMAIL.COM.", None, "google"),
        (None, "contoso-com.mail.protection.outlook.com.", "bob@contoso.com", "microsoft"),
        ("ip->outlook-com.olc.protection.outlook.com", None, None, "microsoft"),
        (None, "mta6.am0.yahoodns.net.", None, "yahoo"),
        (None, "mx01.mail.icloud.com", None, "apple"),
        (None, "mx1a1.comcast.net.", None, "comcast"),
        (None, "mx01.emig.gmx.net.", None, "gmx"),
        (None, "mx-ha03.web.de", None, "gmx"),
        (None, "smtp-in.orange.fr.", None, "orange"),
        (None, "mxs.mail.ru.", None, "mailru"),
        (None, "mx.yandex.ru.", None, "yandex"),
        (None, "mx3.qq.com.", None, "qq"),
        (None, "163mx01.mxmail.netease.com.", None, "netease"),
        (None, "mx1.naver.com", None, "naver"),
        (None, "mx.zoho.eu", None, "zoho"),
        (None, "mail.protonmail.ch.", None, "proton"),
        (None, "mx0a-00123401.pphosted.com.", "ceo@bigcorp.example", "proofpoint"),
        (None, "eu-smtp-inbound-1.mimecast.com.", None, "mimecast"),
        (None, "d123456a.ess.barracudanetworks.com", None, "barracuda"),
        (None, "mx1.hc1234-56.iphmx.com", None, "cisco"),
        # the MX decides over the recipient domain: a company domain hosted by Google
        ("aspmx.l.google.com", None, "x@hotmail.com", "google"),
        # no MX known: the recipient domain decides
        ("", "", "Someone@HOTMAIL.com", "microsoft"),
        (None, None, "a@yahoo.co.uk", "yahoo"),
        (None, "mail.lakeshore-clinic.org.", "a@lakeshore-clinic.org", "other"),
        (None, None, "a@gmial.com", "other"),
        # dot boundaries: notgoogle.com is not google.com
        (None, "mx.notgoogle.com", "a@notgmail.com", "other"),
        (None, None, None, "other"),
    ],
)
def test_match(
    matcher: ProviderMatcher,
    site: str | None,
    peer: str | None,
    recipient: str | None,
    expected: str,
) -> None:
    assert matcher.match(site, peer, recipient) == expected


def test_match_record_ignores_the_peer_of_a_reception(matcher: ProviderMatcher) -> None:
    rec = {
        "type": "Reception",
        "site": "",
        "peer_address": {"name": "mx.yandex.ru"},
        "recipient": "a@gmail.com",
    }
    assert matcher.match_record(rec) == "google"
    assert matcher.match_record({**rec, "type": "Bounce"}) == "yandex"


def test_a_feedback_reports_provider_is_the_complainers(matcher: ProviderMatcher) -> None:
    """The record's own recipient is the feedback mailbox; the complainer is in the report."""
    rec = {
        "type": "Feedback",
        "recipient": "fbl@feedback.example.org",
        "peer_address": {"name": "mx.yandex.ru"},
        "feedback_report": {"supplemental_trace": {"recipient": "Someone@Hotmail.com"}},
    }
    assert matcher.match_record(rec) == "microsoft"
    rec["feedback_report"] = {"original_rcpto_to": ["x@gmail.com"]}
    assert matcher.match_record(rec) == "google"


ODD_RECORDS = [
    {"type": "Bounce", "recipient": " <Bob@GMAIL.com.> "},
    {"type": "Bounce", "recipient": "<yahoo.com>"},
    {"type": "Bounce", "recipient": "a@\tyandex.ru"},
    {"type": "Bounce", "recipient": ["a@mail.ru", "b@gmail.com"]},
    {"type": "Bounce", "recipient": [], "site": "mx.example.net"},
    {"type": "Bounce", "recipient": 7, "peer_address": {"name": "mx.yandex.ru"}},
    {"type": "Bounce", "site": "", "peer_address": {"name": ""}, "recipient": "a@aol.com"},
    {"type": "Rejection", "peer_address": {"name": "mx.yandex.ru"}, "recipient": "a@b.c"},
    {"type": "Feedback", "site": "mx.example.net", "feedback_report": {}},
    {"type": "Feedback", "feedback_report": {"supplemental_trace": {"recipient": 3}}},
]


def test_the_workers_cached_provider_agrees_with_match_record(matcher: ProviderMatcher) -> None:
    """`streamer report` and `classify --summary` (match_record) and the worker's stats
    (Analyzer.provider, cached per clue) name the same provider for every record."""
    from streamer.analytics.analyzer import Analyzer
    from streamer.config import Settings

    analyzer = Analyzer.from_settings(Settings())
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()] + ODD_RECORDS
    for _ in range(2):  # the second time from the analyzer's caches
        for r in records:
            assert analyzer.provider(r) == matcher.match_record(r), r


def test_sample_records_mostly_match(matcher: ProviderMatcher) -> None:
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    found = {matcher.match_record(r) for r in records}
    assert {"google", "microsoft", "yahoo", "apple", "gmx", "yandex", "mailru"} <= found
    assert "other" in found  # gmial.com typos, private clinic domains


def test_cache_is_bounded_and_counts(tmp_path: Path) -> None:
    m = ProviderMatcher({"example.com": "ex"}, {}, cache_size=8)
    for i in range(100):
        assert m.match(None, f"mx{i}.example.com", None) == "ex"
    assert m.match(None, "mx99.example.com", None) == "ex"
    stats = m.cache_stats()
    assert stats["size"] == 8
    assert stats["hits"] == 1 and stats["misses"] == 100


def test_cache_keys_on_domain_not_address() -> None:
    m = ProviderMatcher({}, {"example.com": "ex"}, cache_size=8)
    for i in range(50):
        m.match(None, None, f"user{i}@example.com")
    assert m.cache_stats()["size"] == 1


def test_later_file_overrides_and_errors(tmp_path: Path) -> None:
    a = tmp_path / "a.toml"
    a.write_text('[providers.acme]\nmx = ["acme.example"]\ndomains = ["acme.example"]\n')
    b = tmp_path / "b.toml"
    b.write_text(
        '[providers.acme-eu]\nmx = ["eu.acme.example"]\n'
        '[providers.acme2]\nmx = ["*.acme.example"]\n'
    )
    m = ProviderMatcher.from_files([a, b])
    assert m.match(None, "mx.eu.acme.example", None) == "acme-eu"  # longest suffix
    assert m.match(None, "mx.acme.example", None) == "acme2"  # later file overrides
    dup = tmp_path / "dup.toml"
    dup.write_text('[providers.x]\nmx = ["a.example"]\n[providers.y]\nmx = ["A.example."]\n')
    with pytest.raises(TableError, match=r"dup.toml: providers.y.mx\[0\]: 'a.example' is also"):
        ProviderMatcher.from_files([dup])
    bad = tmp_path / "bad.toml"
    bad.write_text('[providers.x]\nmx = ["has space.example"]\n')
    with pytest.raises(TableError, match=r"bad.toml: providers.x.mx\[0\]"):
        ProviderMatcher.from_files([bad])
    other = tmp_path / "other.toml"
    other.write_text('[providers.other]\nmx = ["o.example"]\n')
    with pytest.raises(TableError, match=r"providers\.other"):
        ProviderMatcher.from_files([other])


def test_a_multi_recipient_record_matches_by_its_first_recipient(
    matcher: ProviderMatcher,
) -> None:
    from streamer.analytics.analyzer import Analyzer
    from streamer.config import Settings

    record = {"type": "Bounce", "site": "", "recipient": ["x@gmail.com", "y@gmail.com"]}
    assert matcher.match_record(record) == matcher.match(None, None, "x@gmail.com") == "google"
    analyzer = Analyzer.from_settings(Settings())  # the worker's path, with its caches
    assert analyzer.provider(record) == "google"
