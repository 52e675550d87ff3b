"""``streamer suppressions check`` and ``export``: the list as the compacted topic holds it now
(the latest value per key; a tombstone removes the address), on the real broker."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from confluent_kafka import Producer
from typer.testing import CliRunner

from streamer.cli import _register, app

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z
RULE = {"file": "iana.toml", "label": "InvalidRecipient", "index": 3, "pattern": "^5\\.1\\.1"}


def _entry(recipient: str, count: int, **extra: object) -> bytes:
    doc = {
        "recipient": recipient,
        "label": "InvalidRecipient",
        "rule": RULE,
        "response": "550 5.1.1 user unknown",
        "provider": "google",
        "tenant": "acme",
        "sender_domain": "mail.example.net",
        "first_seen": T0,
        "last_seen": T0 + 60_000 * (count - 1),
        "count": count,
        **extra,
    }
    return orjson.dumps(doc)


def _topic(bootstrap: str, new_topic: Callable[..., str]) -> str:
    topic = new_topic(2)
    p = Producer({"bootstrap.servers": bootstrap})
    for key, value in [
        (b"ann@example.com", _entry("ann@example.com", 1)),
        (b"bob@example.com", _entry("bob@example.com", 1)),
        (b"ann@example.com", _entry("ann@example.com", 3)),  # the latest wins
        (b"bob@example.com", None),  # lifted
        (b"cat@example.com", _entry("cat@example.com", 1, reason="complaint", rule=None)),
    ]:
        p.produce(topic, value, key)
    assert p.flush(10) == 0
    return topic


def test_check_says_since_when_and_why(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = _topic(kafka_bootstrap, new_topic)
    _register()
    args = ["suppressions", "check", "--topic", topic, "--bootstrap", kafka_bootstrap]
    result = CliRunner().invoke(
        app, [*args, "<Ann@Example.COM>", "bob@example.com", "cat@example.com"]
    )
    assert result.exit_code == 1, result.output  # one at least is suppressed
    assert result.stdout.splitlines() == [
        "ann@example.com: suppressed since 2026-09-21T14:13:20.000Z (hard-bounce, "
        "InvalidRecipient, 3 times, last 2026-09-21T14:15:20.000Z) rule iana.toml#3 "
        "response '550 5.1.1 user unknown'",
        "bob@example.com: not suppressed",
        "cat@example.com: suppressed since 2026-09-21T14:13:20.000Z (complaint, "
        "InvalidRecipient) response '550 5.1.1 user unknown'",
    ]
    result = CliRunner().invoke(app, [*args, "bob@example.com"])
    assert (result.exit_code, result.stdout) == (0, "bob@example.com: not suppressed\n")


def test_export_csv_and_jsonl(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = _topic(kafka_bootstrap, new_topic)
    _register()
    args = ["suppressions", "export", "--topic", topic, "--bootstrap", kafka_bootstrap]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "recipient,reason,label,since,last_seen,count,provider,tenant,sender_domain,rule,response",
        "ann@example.com,hard-bounce,InvalidRecipient,2026-09-21T14:13:20.000Z,"
        "2026-09-21T14:15:20.000Z,3,google,acme,mail.example.net,iana.toml#3,"
        "550 5.1.1 user unknown",
        "cat@example.com,complaint,InvalidRecipient,2026-09-21T14:13:20.000Z,"
        "2026-09-21T14:13:20.000Z,1,google,acme,mail.example.net,,550 5.1.1 user unknown",
    ]
    assert result.stderr == "2 suppressed addresses\n"
    result = CliRunner().invoke(app, [*args, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    docs = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(d["recipient"], d["count"]) for d in docs] == [
        ("ann@example.com", 3),
        ("cat@example.com", 1),
    ]
    assert orjson.dumps(docs[0]) == _entry("ann@example.com", 3)
    bad = CliRunner().invoke(app, [*args, "--format", "xml"])
    assert (bad.exit_code, bad.stderr) == (
        2,
        "configuration error: --format: 'xml' is neither csv nor jsonl\n",
    )


def test_sync_without_a_usable_redis_url_is_a_one_line_configuration_error(
    clean_env: object,
) -> None:
    _register()
    missing = CliRunner().invoke(app, ["suppressions", "sync"])
    assert (missing.exit_code, missing.stderr) == (
        2,
        "configuration error: give --redis URL or set suppressions_redis_url\n",
    )
    bad = CliRunner().invoke(app, ["suppressions", "sync", "--redis", "http://127.0.0.1:6379"])
    assert bad.exit_code == 2
    assert bad.stderr.startswith("configuration error: suppressions_redis_url: Redis URL must ")
    assert bad.stderr.count("\n") == 1
