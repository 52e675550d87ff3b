"""Realistic, deterministic KumoMTA log records for the demo, the benchmarks and the tests.

The records follow the JSON log record KumoMTA writes today (its ``log_record`` reference and
the ``JsonLogRecord`` struct of its ``kumo-log-types`` crate; ``tests/kumomta_schema.py`` holds
the schema every record is checked against): ``type``, ``id``, ``sender``, ``recipient``,
``queue``, ``site``, ``size``, ``response{code, enhanced_code, content, command}``,
``peer_address``, ``timestamp`` and ``event_time`` (epoch seconds and RFC 3339 of one instant),
``created`` and ``created_time``, ``num_attempts``, ``bounce_classification``, ``egress_pool``,
``egress_source``, ``source_address``, ``feedback_report`` (RFC 5965 fields on ``Feedback``
records), ``meta``, ``headers``, the protocols, ``nodeid``; ``tls_*``, ``provider_name`` and
``session_id`` only when set, as KumoMTA omits them rather than writing null. Response content is
one line (KumoMTA joins a multi-line SMTP response with spaces when it logs it). Every response
text below is our own wording, written in the style each mailbox provider uses (user unknown,
mailbox full, spam blocks, DNS failures, rate limits, policy and authentication failures).

Traffic is simulated as interleaved message lifecycles: a ``Reception`` (or, for a message another
node handed over, an ``XferIn``), then zero or more ``TransientFailure``/``Delayed`` records, then
a ``Delivery``, ``Bounce``, ``Expiration`` or ``AdminBounce``; some deliveries are later followed
by an ``OOB`` bounce or a ``Feedback`` (ARF) report, and inbound ``Rejection`` records appear on
their own, as KumoMTA's SMTP listener logs them (no ``id``; the client's command as sent; for a
refused ``RCPT TO`` the transaction's last *accepted* recipient in ``recipient``, the refused
address only in the command). With ``log_hook`` (the bundled sample has one) the stream is a
node's local log with a log hook shipping some records: each shipped record adds the hook's
bookkeeping ``Delivery`` (now and then a failed attempt) of its queue ``<name>.log_hook``, with
``reception_protocol`` "LogRecord", from a random stream of its own (the mail stays the same).
A few messages take the newer paths: moved to another queue (``AdminRebind``), released from the
deferred-injection queue (``DeferredInjectionRebind``) or transferred to another node
(``AdminRebind`` to the transfer queue, then ``XferOut``). Providers are drawn by market share
and each provider's responses by a Zipf-like law, so a few responses dominate as in real traffic,
while addresses, ids and timestamps vary.

Kafka key: the message spool ``id``. Every record of one message lands on the same partition, so a
message's lifecycle (``TransientFailure`` ... then ``Bounce``) keeps its order, and partitions stay
balanced. Keying by recipient domain would also keep per-provider order, but one provider (Gmail,
about a third of the traffic) would then own one partition.

A record is identified by ``(id, type, num_attempts)``: unique within a generated stream, which is
what the demo and the end-to-end benchmark use to check that every input came out.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from streamer.deadletter import Headers
from streamer.records import (
    CLASSIFIABLE_TYPES,
    LOG_RECORD_PROTOCOL,
    MALFORMED_REASONS,
    effective_type,
)

#: Default size limit the ``too-large`` samples exceed (``Settings.max_message_bytes``).
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576

BASE_TIMESTAMP = 1_767_268_800  # 2026-01-01T12:00:00Z: fixed so the output is reproducible
_NS = 1_000_000_000


def rfc3339(ns: int) -> str:
    """An epoch time in nanoseconds as KumoMTA writes ``event_time``/``created_time``: UTC with a
    ``Z``, and 0, 3, 6 or 9 fractional digits, the fewest that keep every non-zero digit."""
    secs, frac = divmod(ns, _NS)
    text = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return text + "Z"
    if frac % 1_000_000 == 0:
        return f"{text}.{frac // 1_000_000:03d}Z"
    if frac % 1_000 == 0:
        return f"{text}.{frac // 1_000:06d}Z"
    return f"{text}.{frac:09d}Z"


def _duration(ns: int) -> str:
    """A duration the way KumoMTA's ``Delayed`` records spell it (``4m 59s 120ms``)."""
    parts = []
    for unit, size in (("h", 3600 * _NS), ("m", 60 * _NS), ("s", _NS), ("ms", 1_000_000)):
        n, ns = divmod(ns, size)
        if n:
            parts.append(f"{n}{unit}")
    return " ".join(parts) or "0s"


class SampleMessage(NamedTuple):
    """One Kafka message: what a KumoMTA log shipper would produce."""

    key: bytes | None
    value: bytes
    headers: Headers
    kind: str  # "classify", "pass" or "malformed:<reason>"


def record_identity(record: dict[str, Any]) -> tuple[str, str, int]:
    """The key that identifies one generated record among all others of a stream: a Rejection
    has no message (``id`` ""), so its SMTP session and time stand in."""
    ident = str(record.get("id")) or f"{record.get('session_id')}@{record.get('event_time')}"
    return (ident, str(record.get("type")), int(record.get("num_attempts") or 0))


# --------------------------------------------------------------------------------------------
# Providers and their responses (our own wording)
# --------------------------------------------------------------------------------------------

# (code, enhanced status "c.s.d" or None, content template, command). Templates may use
# {rcpt} {local} {domain} {sender_domain} {src_ip} {tid} {ts}; {tid} is a per-attempt token.
Resp = tuple[int, str | None, str, str | None]


@dataclass(frozen=True)
class Provider:
    domain: str
    weight: float
    site: str  # KumoMTA's site name: the MX host set
    mx: str  # the MX host name reported in peer_address
    ip_prefix: str  # first octets of the MX addresses
    ok: str  # 250 response content template
    failures: tuple[Resp, ...]  # most frequent first (Zipf rank order)
    extra_domains: tuple[str, ...] = ()  # sibling domains served by the same MX


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _responses(table: str) -> tuple[Resp, ...]:
    """Parse a response table: ``<code> <enhanced|-> <command|-> | <content>`` per entry.

    Indented lines continue the previous entry (joined by one space); a literal ``\\r\\n`` in the
    content stands for the line break of a multi-line SMTP response.
    """
    entries: list[str] = []
    for line in table.strip("\n").splitlines():
        if line.startswith((" ", "\t")) and entries:
            entries[-1] += " " + line.strip()
        elif line.strip():
            entries.append(line.strip())
    commands = {"RCPT": "RCPT TO", "MAIL": "MAIL FROM", "-": None}
    out: list[Resp] = []
    for entry in entries:
        head, content = entry.split(" | ", 1)
        code, enhanced, command = head.split()
        out.append(
            (
                int(code),
                None if enhanced == "-" else enhanced,
                content.replace("\\r\\n ", "\r\n").replace("\\r\\n", "\r\n"),
                commands.get(command, command),
            )
        )
    return tuple(out)


def _provider(
    domain: str,
    weight: float,
    site: str,
    mx: str,
    ip_prefix: str,
    ok: str,
    failures: str,
    extra_domains: tuple[str, ...] = (),
) -> Provider:
    return Provider(domain, weight, site, mx, ip_prefix, ok, _responses(failures), extra_domains)


PROVIDERS: tuple[Provider, ...] = (
    _provider(
        "gmail.com",
        30,
        "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
        "gmail-smtp-in.l.google.com.",
        "142.250",
        "OK {ts} {tid} - gsmtp",
        """
550 5.1.1 RCPT | The account you sent to does not exist. Please check the address for typing\\r\\n
    mistakes or extra spaces. Learn more at https://support.google.com/mail/?p=NoSuchUser - gsmtp
452 4.2.2 RCPT | The recipient's mailbox is over its storage quota and cannot accept mail right
    now.\\r\\n More information: https://support.google.com/mail/?p=OverQuotaTemp - gsmtp
421 4.7.28 . | We have seen an unusual volume of unsolicited mail from your IP range, so mail
    from it is temporarily rate limited. See
    https://support.google.com/mail/?p=UnsolicitedRateLimitError - gsmtp
550 5.7.1 . | This message looks like unsolicited bulk mail and was blocked to protect our
    users.\\r\\n See https://support.google.com/mail/?p=UnsolicitedMessageError {tid} - gsmtp
550 5.7.26 . | Mail from {sender_domain} failed authentication and the domain's DMARC policy
    asks us to reject it. See https://support.google.com/mail/?p=DmarcRejection - gsmtp
550 5.2.1 RCPT | The account you tried to reach has been disabled. - gsmtp
450 4.2.1 RCPT | This user is receiving mail faster than we can accept it; please retry later.
    - gsmtp
552 5.3.4 . | The message is bigger than our size limit allows. - gsmtp
550 5.7.25 MAIL | The sending IP [{src_ip}] has no PTR record; reverse DNS must resolve for
    mail to be accepted. - gsmtp
""",
        ("googlemail.com",),
    ),
    _provider(
        "outlook.com",
        18,
        "outlook-com.olc.protection.outlook.com",
        "outlook-com.olc.protection.outlook.com.",
        "52.101",
        "2.6.0 <{tid}@{sender_domain}> [InternalId={ts}, Hostname=DM6PR01MB{ts}] Queued mail"
        " for delivery",
        """
550 5.5.0 RCPT | Requested action not taken: mailbox unavailable (S2017062302).
    [BN1NAM02FT011.eop-nam02.prod.protection.outlook.com]
550 5.7.1 MAIL | Unfortunately, messages from [{src_ip}] weren't sent. Please contact your
    Internet service provider since part of their network is on our block list (S3150).
451 4.7.650 MAIL | The mail server [{src_ip}] has been temporarily rate limited due to IP
    reputation.
550 5.4.1 RCPT | Recipient address rejected: Access denied. AS(201806281)
    [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]
552 5.2.2 RCPT | Mailbox full: the recipient's mailbox has exceeded its storage limit.
550 5.7.509 . | Access denied, sending domain {sender_domain} does not pass DMARC verification
    and has a DMARC policy of reject.
421 4.3.2 - | The service is not available right now; try again later.
    [AM6EUR05FT020.eop-eur05.prod.protection.outlook.com]
550 5.7.708 MAIL | Service unavailable. Access denied, traffic not accepted from this IP.
    [{tid}]
""",
        ("hotmail.com", "live.com", "msn.com", "hotmail.co.uk", "hotmail.fr"),
    ),
    _provider(
        "yahoo.com",
        10,
        "(mta5|mta6|mta7).am0.yahoodns.net",
        "mta6.am0.yahoodns.net.",
        "67.195",
        "ok dirdel",
        """
554 5.7.9 . | Message not accepted for policy reasons.  See
    https://postmaster.yahooinc.com/error-codes
421 4.7.0 MAIL | [TSS04] Messages from {src_ip} temporarily deferred due to unexpected volume
    or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes
554 5.7.9 . | Message not accepted for policy reasons.\\r\\n See
    https://postmaster.yahooinc.com/error-codes
552 - RCPT | 1 Requested mail action aborted, mailbox not found
451 - . | Message temporarily deferred - [160]
553 5.7.1 MAIL | [BL21] Connections will not be accepted from {src_ip}, because the ip is in
    Spamhaus's list; see https://postmaster.yahooinc.com/error-codes
452 4.2.2 RCPT | Mailbox over quota
550 5.7.9 . | This mail has been blocked because the sender is unauthenticated. Yahoo requires
    all senders to authenticate with either SPF or DKIM.
""",
        ("ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.fr", "aol.com"),
    ),
    _provider(
        "icloud.com",
        6,
        "mx0[1-2].mail.icloud.com",
        "mx01.mail.icloud.com.",
        "17.57",
        "<{tid}@{sender_domain}> [CS{ts}] Message accepted for delivery",
        """
550 5.1.1 RCPT | <{rcpt}>: user does not exist
421 4.7.0 - | Service temporarily unavailable: too many concurrent connections from
    [{src_ip}], slow down
554 5.7.1 . | [HM08] Message rejected due to local policy. Please visit
    https://support.apple.com/en-us/HT204137
552 5.2.2 RCPT | <{rcpt}>: user is over quota
550 5.7.0 MAIL | Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip={src_ip}
""",
        ("me.com", "mac.com"),
    ),
    _provider(
        "comcast.net",
        3,
        "mx1.comcast.net",
        "mx1a1.comcast.net.",
        "96.114",
        "2.0.0 {tid} mail accepted for delivery",
        """
550 5.1.1 RCPT | {tid} Not our Customer
554 5.7.1 MAIL | resimta-po-{ts} comcast {src_ip} found on one or more DNSBLs, see
    http://postmaster.comcast.net/smtp-error-codes.php#BL000001
452 4.2.2 RCPT | {tid} mailbox full
421 4.1.0 MAIL | {src_ip} Throttled - try again later, see
    http://postmaster.comcast.net/smtp-error-codes.php#RL000010
554 5.7.1 . | {tid} comcast message content rejected, see
    http://postmaster.comcast.net/smtp-error-codes.php#554
""",
    ),
    _provider(
        "gmx.de",
        4,
        "mx00.emig.gmx.net",
        "mx01.emig.gmx.net.",
        "212.227",
        "Requested mail action okay, completed: id={tid}",
        """
550 - RCPT | Requested action not taken: mailbox unavailable
554 5.7.1 . | Transaction failed\\r\\n Reject due to policy restrictions.\\r\\n For explanation
    visit https://postmaster.gmx.net/en/case?c=hi&i=ip&v={src_ip}&r={tid}
452 4.2.2 RCPT | Mailbox full: user quota exceeded
421 - - | gmx.net (mxgmx116) Nemesis ESMTP Service not available\\r\\n No SMTP service\\r\\n
    Bad DNS PTR resource record.
550 5.7.1 . | Spam message rejected. For explanation visit
    https://postmaster.gmx.net/en/error-messages
""",
        ("gmx.net", "gmx.at", "web.de"),
    ),
    _provider(
        "t-online.de",
        3,
        "mx00.t-online.de",
        "mx03.t-online.de.",
        "194.25",
        "2.0.0 Message accepted.",
        """
550 5.1.1 RCPT | Recipient address rejected: user unknown in local recipient table
554 - MAIL | IP={src_ip} - A problem occurred. (Ask your postmaster for help or to contact
    tosa@rx.t-online.de to clarify.) (BL)
452 4.2.2 RCPT | Mailbox full, try later
421 - - | Service not available: too many connections from your IP, closing channel
""",
    ),
    _provider(
        "orange.fr",
        3,
        "smtp-in.orange.fr",
        "smtp-in.orange.fr.",
        "80.12",
        "2.0.0 {tid} mail accepted for delivery",
        """
550 5.1.1 RCPT | <{rcpt}>: Adresse d au moins un destinataire invalide. Invalid recipient.
    OFR_416 [416]
421 - - | mwinf5c{ts} ME Trop de connexions, veuillez verifier votre configuration. Too many
    connections, slow down. OFR005_104 [104]
552 5.2.2 RCPT | <{rcpt}>: Boite du destinataire pleine. Recipient mailbox full. OFR_417 [417]
554 5.7.1 MAIL | ME Service refuse. Veuillez essayer plus tard. Service refused, please try
    later. OFR004_506 [506]
550 5.7.1 . | Mail content rejected as spam. Message refuse pour spam. OFR_999 [999]
""",
        ("wanadoo.fr",),
    ),
    _provider(
        "mail.ru",
        3,
        "mxs.mail.ru",
        "mxs.mail.ru.",
        "217.69",
        "OK id=1w{tid}",
        """
550 - RCPT | Message was not accepted -- invalid mailbox.  Local mailbox {rcpt} is
    unavailable: user not found
550 - . | spam message rejected. Please visit https://help.mail.ru/notspam-support/id?c={tid}
    or report details to abuse@corp.mail.ru. Error code: {ts}.
452 - RCPT | Message was not accepted -- mailbox {rcpt} is full (quota exceeded)
421 - MAIL | Too many messages from your IP, try again later. Learn more at
    https://help.mail.ru/mail/error-codes
""",
        ("bk.ru", "inbox.ru", "list.ru"),
    ),
    _provider(
        "yandex.ru",
        3,
        "mx.yandex.ru",
        "mx.yandex.ru.",
        "77.88",
        "2.0.0 Ok: queued on mail-nwsmtp-mxfront-main-{ts}.sas.yp-c.yandex.net as {tid}",
        """
550 5.7.1 RCPT | No such user!
554 5.7.1 . | [2] Message rejected under suspicion of SPAM; https://ya.cc/1IrBc {tid}
452 4.2.2 RCPT | Mailbox is full; try again later
451 4.7.1 MAIL | Sorry, the service is currently unavailable. Please come back later.
550 5.7.1 RCPT | Policy rejection on the target address
""",
        ("ya.ru", "yandex.com"),
    ),
    _provider(
        "qq.com",
        3,
        "mx3.qq.com",
        "mx3.qq.com.",
        "183.47",
        "Ok: queued as ",
        """
550 - RCPT | Mailbox not found.
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000728
550 - . | Mail content denied.
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000726
451 - MAIL | Ip frequency limited [{src_ip}].
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000722
550 - RCPT | The mailbox is full.
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000729
550 - - | Connection frequency limited.
    http://service.mail.qq.com/cgi-bin/help?subtype=1&&id=20022&&no=1000725
""",
        ("foxmail.com",),
    ),
    _provider(
        "163.com",
        2,
        "163mx00.mxmail.netease.com",
        "163mx01.mxmail.netease.com.",
        "220.181",
        "Mail OK queued as mx{tid}",
        """
550 - RCPT | User not found or suspended
554 - . | DT:SPM 163 mx{ts}, please see
    http://mail.163.com/help/help_spam_16.htm?ip={src_ip}&hostid=mx{ts}&time={ts}
451 - MAIL | MI:SFQ Connection frequency limited, try later
552 - . | Requested mail action aborted: exceeded mailsize limit
550 - - | MI:NHD HELO hostname has no DNS A record
""",
        ("126.com", "yeah.net"),
    ),
    _provider(
        "att.net",
        2,
        "ff-ip4-mx-vip1.prodigy.net",
        "ff-ip4-mx-vip1.prodigy.net.",
        "144.160",
        "2.0.0 Ok: queued",
        """
553 5.3.0 MAIL | flpd575 DNSBL:RBL 521< {src_ip} >_is_blocked.For assistance forward this
    error to abuse_rbl@abuse-att.net
550 5.1.1 RCPT | <{rcpt}>... User unknown
421 - - | Service not available - too busy, try again later
""",
        ("sbcglobal.net", "bellsouth.net"),
    ),
    _provider(
        "libero.it",
        1,
        "smtp-in.libero.it",
        "smtp-in.libero.it.",
        "213.209",
        "2.0.0 {tid} mail accepted for delivery",
        """
550 5.2.1 RCPT | <{rcpt}>: Utente inesistente / User unknown
452 4.2.2 RCPT | <{rcpt}>: Casella piena / Mailbox full
550 - MAIL | smtp-in.libero.it: IP address {src_ip} listed on spam blocklist
""",
        ("virgilio.it",),
    ),
    _provider(
        "free.fr",
        1,
        "mx1.free.fr",
        "mx1.free.fr.",
        "212.27",
        "Ok: queued as {tid}",
        """
550 5.1.1 RCPT | <{rcpt}>: Recipient address rejected: Mailbox disabled for this recipient
452 4.2.2 RCPT | <{rcpt}>: Recipient address rejected: Quota exceeded (mailbox for user is
    full)
421 4.7.0 MAIL | Too many spams from your IP ({src_ip}), please visit http://postmaster.free.fr/
""",
    ),
    _provider(
        "proton.me",
        1,
        "mail.protonmail.ch",
        "mail.protonmail.ch.",
        "185.70",
        "2.0.0 Ok: queued as 4Z{tid}",
        """
550 5.1.1 RCPT | <{rcpt}>: Recipient address rejected: Address does not exist
554 5.7.1 . | Message rejected: SPF check failed for {sender_domain}
""",
        ("protonmail.com", "pm.me"),
    ),
    # Corporate domains behind the usual filtering gateways and an on-premises Exchange.
    _provider(
        "northwind-traders.co.uk",
        2,
        "eu-smtp-inbound-1.mimecast.com",
        "eu-smtp-inbound-1.mimecast.com.",
        "195.130",
        "Ok {tid}",
        """
550 - RCPT | Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550
    [{tid}.eu{ts}]
550 - RCPT | Administrative prohibition - envelope blocked -
    https://community.mimecast.com/docs/DOC-1369#550 [{tid}.eu{ts}]
451 - MAIL | Internal resource temporarily unavailable -
    https://community.mimecast.com/docs/DOC-1369#451 [{tid}.eu{ts}]
554 - . | Email rejected due to security policies -
    https://community.mimecast.com/docs/DOC-1369#554 [{tid}.eu{ts}]
""",
        ("contoso-pharma.de", "fabrikam-logistics.com"),
    ),
    _provider(
        "tailspin-toys.com",
        2,
        "mx0a-00123401.pphosted.com",
        "mx0a-00123401.pphosted.com.",
        "148.163",
        "2.0.0 {tid} Message accepted for delivery",
        """
550 5.1.1 RCPT | User Unknown
554 5.7.1 . | Blocked by policy: message contains a prohibited attachment type (.exe)
550 5.7.1 MAIL | Service unavailable; client host [{src_ip}] blocked using zen.spamhaus.org;
    https://www.spamhaus.org/query/ip/{src_ip}
452 4.5.3 RCPT | Too many recipients in this session, retry the rest later
550 5.7.1 RCPT | Relaying denied. Proper authentication required.
""",
        ("adventure-works.com", "wingtip-bikes.net"),
    ),
    _provider(
        "lakeshore-clinic.org",
        1,
        "mail.lakeshore-clinic.org",
        "mail.lakeshore-clinic.org.",
        "203.0",
        "2.6.0 <{tid}@{sender_domain}> Queued mail for delivery",
        """
550 5.1.10 RCPT | RESOLVER.ADR.RecipientNotFound; Recipient {rcpt} not found by SMTP address
    lookup
552 5.2.2 RCPT | This message couldn't be delivered because the recipient's mailbox is full.
550 5.7.133 RCPT | RESOLVER.RST.SenderNotAuthenticatedForGroup; authentication required;
    Delivery restriction check failed as sender not authenticated
451 4.4.0 - | DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent
    domain
550 5.7.1 . | Your message wasn't delivered because the recipient's email provider rejected
    it.\\r\\n This is an auto-reply: I am out of the office until Monday.
""",
        ("harbor-credit-union.org",),
    ),
)

# Misspelled or dead domains: KumoMTA itself reports the failure (no peer answered).
_DEAD_DOMAINS: tuple[str, ...] = (
    "gmial.com",
    "hotmial.com",
    "yaho.com",
    "outlok.com",
    "gnail.com",
    "old-startup-2019.io",
)
_DNS_FAILURES = _responses(
    """
550 5.4.4 - | Unable to deliver: MX lookup for {domain} returned NXDOMAIN (domain does not
    exist)
451 4.4.3 - | KumoMTA internal: DNS resolution of {domain} failed: SERVFAIL, will retry
550 5.1.2 - | Unable to deliver: {domain} has a null MX record and accepts no mail
"""
)
_CONNECT_FAILURES = _responses(
    """
421 4.4.1 - | KumoMTA internal: failed to connect to any candidate hosts: connection timed out
    after 60s
421 4.4.2 - | KumoMTA internal: connection reset by peer while reading the banner
451 4.4.2 STARTTLS | KumoMTA internal: TLS handshake with {mx} failed: certificate has expired
"""
)
_EXPIRATION = _responses(
    """
551 5.4.7 - | Next retry would fall after the message's expiration time; giving up
"""
)[0]
_ADMIN_BOUNCES = _responses(
    """
551 5.6.0 - | Administrator bounced via API: campaign cancelled by tenant
551 5.6.0 - | Administrator bounced via API: purging queue for {domain} after blocklisting
"""
)
# Why a message went to the scheduled queue without a TransientFailure (KumoMTA's InsertReason
# names, as its Delayed records list them), and how long until it is due again (seconds).
_DELAY_CONTEXTS: tuple[tuple[str, int], ...] = (
    ("Received, ScheduledForLater", 1800),
    ("MessageRateThrottle", 60),
    ("ThrottledByThrottleInsertReadyQueue", 90),
    ("ReadyQueueWasFull", 30),
    ("ConnectionRateThrottle", 45),
)
# Why an operator rebound a queue (kcli rebind --reason ...).
_REBIND_REASONS: tuple[str, ...] = (
    "route via the backup relay while the primary pool is blocklisted",
    "move to the warm-up pool",
)
_REBIND_ROUTES: tuple[str, ...] = ("relay-backup.internal", "warmup-relay.internal")
_XFER_TARGET = "http://10.20.0.12:8000/"  # the node messages are transferred to
_XFER_QUEUE = f"{_XFER_TARGET}.xfer.kumomta.internal"
_DEFERRED_QUEUE = "deferred_smtp_inject.kumomta.internal"
# Refusals of KumoMTA's own SMTP listener; the command column is the SMTP phase. KumoMTA logs
# the client's command line as it was sent (``RCPT TO:<addr>``) and the transaction's state at
# that moment as ``sender``/``recipient``: for a refused RCPT TO that is the last recipient it
# *accepted* (or "" before any), never the refused one (its ``smtp_server``).
_REJECTIONS = _responses(
    """
550 5.7.1 RCPT | relaying denied: {domain} is not a domain we relay for
550 5.1.1 RCPT | recipient {rcpt} is not known here
421 4.3.2 - | too many connections from your address, try again later
535 5.7.8 AUTH | authentication failed: invalid credentials
552 5.3.4 DATA | message size exceeds the configured limit of 20MB
451 4.7.1 RCPT | {domain} is paused by policy, try again later
451 4.3.0 DATA | spool is temporarily out of space, retry later
550 5.7.1 MAIL | sender {sender_domain} is not allowed for this listener
"""
)
# Refused recipients are the most frequent refusals (unknown users above all): the deck holds
# each refusal as often as it is drawn.
_REJECTION_DECK: tuple[Resp, ...] = (
    *(_REJECTIONS[1],) * 4,
    *(_REJECTIONS[0],) * 2,
    *(_REJECTIONS[5],) * 2,
    *(r for i, r in enumerate(_REJECTIONS) if i not in (0, 1, 5)),
)
# A log hook (``policy-extras.log_hooks``): each record it ships becomes a message of its own
# queue, whose delivery KumoMTA logs too, in the local log files (the hook never ships those).
# The sample's hook ships the Rejections and one tenant's records (its ``filter``).
_HOOK_TENANTS: tuple[str, ...] = ("acme",)
_HOOK_FAILURES = _responses(
    """
400 - - | kafka: broker transport failure, will retry
500 - - | kafka: message size too large for the topic
"""
)
# DSN diagnostics seen in out-of-band bounces (the remote MTA accepted, then bounced). KumoMTA
# takes the enhanced code from the report's Status field, so every one has one.
_OOB_DIAGNOSTICS = _responses(
    """
550 5.1.1 - | user unknown: no mailbox here by that name
552 5.2.2 - | mailbox full: quota exceeded
550 5.7.1 - | message rejected as spam by content filter
554 5.6.0 - | message rejected: virus detected in attachment (Eicar-Test-Signature)
550 5.2.1 - | this mailbox has been disabled due to inactivity
550 5.0.0 - | Vacation auto-reply: I'm travelling until the 14th with limited email access
"""
)

_FEEDBACK_AGENTS: tuple[tuple[str, str], ...] = (
    ("Yahoo!-Mail-Feedback/2.0", "feedback.yahoo.com"),
    ("Microsoft JMRP/1.1", "jmrp.microsoft.com"),
    ("Comcast Feedback Loop (V0.01)", "fbl.comcast.net"),
    ("Mail.Ru FBL/1.0", "fbl.mail.ru"),
)
# RFC 5965 Feedback-Type values, dealt from a shuffled deck so that every twelve reports hold
# each of them: mostly complaints (abuse), now and then the others.
_FEEDBACK_DECK: tuple[str, ...] = ("abuse",) * 8 + ("not-spam", "fraud", "other", "virus")

_SENDER_DOMAINS: tuple[str, ...] = (
    "news.acme-outdoor.com",
    "mail.brightbank.example",
    "notify.cloudtix.io",
    "em.fashionloft.shop",
    "updates.greenleaf-grocers.com",
    "alerts.pinepay.app",
    "hello.roastery-club.coffee",
    "info.trailhead-tours.travel",
)
_TENANTS: tuple[str, ...] = (
    "acme",
    "brightbank",
    "cloudtix",
    "fashionloft",
    "greenleaf",
    "pinepay",
    "roastery",
    "trailhead",
)
_CAMPAIGNS: tuple[str, ...] = (
    "weekly-digest",
    "password-reset",
    "order-confirmation",
    "spring-sale",
    "abandoned-cart",
    "welcome-series-1",
    "welcome-series-2",
    "invoice",
    "reactivation",
    "product-launch",
)
_SUBJECTS: tuple[str, ...] = (
    "Your weekly digest is here",
    "Reset your password",
    "Order #{n} confirmed",
    "Spring sale: 30% off everything",
    "You left something in your cart",
    "Welcome aboard!",
    "Your invoice for {month}",
    "We miss you — here's 10% off",
    "Meet the new Trailrunner X",
)
_FIRST: tuple[str, ...] = _words(
    "anna ben chloe david emma felix giulia hiro ines jonas kate liam maria noah olga "
    "pierre qing rosa sven tomas ursula vlad wei xenia yusuf zoe jose mueller ivan li"
)
_LAST: tuple[str, ...] = _words(
    "smith garcia mueller rossi dubois ivanova wang kim nowak silva jensen tanaka "
    "brown schmidt lopez chen petrov martin"
)


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _single_line(text: str) -> str:
    """Response content as KumoMTA logs it: each line break of a multi-line reply is one space."""
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _internal(code: int, content: str) -> dict[str, Any]:
    """A response KumoMTA writes itself (no peer, no enhanced code, no command)."""
    return {"code": code, "enhanced_code": None, "content": content, "command": None}


def _zipf_weights(n: int, s: float = 1.2) -> list[float]:
    return [1.0 / (rank + 1) ** s for rank in range(n)]


@dataclass
class _Message:
    """A message in flight through the simulated MTA: what its remaining records will be."""

    spool_id: str
    sender: str
    recipient: str
    provider: Provider | None  # None: a dead domain
    domain: str
    created_ns: int  # reception time, epoch nanoseconds
    tenant: str
    campaign: str
    subject: str
    size: int
    plan: list[str]  # record types still to emit, in order
    attempts: int = 0
    session_id: str = ""
    queue: str = ""  # set when an operator rebinds the message to another queue
    xfer_from: str = ""  # the node a transferred-in message came from

    @property
    def created(self) -> int:
        return self.created_ns // _NS


class _Parts:
    """The generator's clock and random streams, and the parts records are made of: random
    names and addresses, rendered responses, the fields every record has, a delivery
    attempt's."""

    def __init__(
        self, seed: int, records_per_second: float = 4.0, log_hook: str | None = None
    ) -> None:
        self.rng = random.Random(seed)
        # event time advances by a random step averaging 1 / records_per_second
        self.max_step_ns = max(1, int(2 * _NS / records_per_second))
        self.now_ns = BASE_TIMESTAMP * _NS
        self.nodeid = str(uuid.UUID(int=self.rng.getrandbits(128), version=1))
        self.peer_nodeid = str(uuid.UUID(int=self.rng.getrandbits(128), version=1))
        self.provider_weights = [p.weight for p in PROVIDERS]
        self.failure_weights = {p.domain: _zipf_weights(len(p.failures)) for p in PROVIDERS}
        self.active: list[_Message] = []
        self.feedback_deck: list[str] = []
        #: the log hook's name (None: no hook) and its pending bookkeeping records; its own
        #: random stream, so a stream with a hook holds the same mail as one without
        self.log_hook = log_hook
        self.hook_rng = random.Random(seed ^ 0x10C)
        self.hook_pending: list[dict[str, Any]] = []
        #: the SMTP dialogue of a Rejection (its own stream too: the traffic stays the same)
        self.smtp_rng = random.Random(seed ^ 0x5A7)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def now(self) -> int:
        """The current time in whole epoch seconds (KumoMTA's ``timestamp``)."""
        return self.now_ns // _NS

    def _hex(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _token(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(self.rng.choices(alphabet, k=self.rng.randint(10, 16)))

    def _local_part(self) -> str:
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        style = self.rng.random()
        if style < 0.4:
            return f"{first}.{last}"
        if style < 0.7:
            return f"{first}{last}{self.rng.randint(1, 9999)}"
        if style < 0.9:
            return f"{first[0]}{last}{self.rng.randint(70, 99)}"
        return f"{first}_{self.rng.randint(100, 99999)}"

    def _src_ip(self) -> str:
        return f"198.51.100.{self.rng.randint(10, 40)}"

    def _render(self, resp: Resp, msg: _Message, mx: str) -> dict[str, Any]:
        code, enhanced, template, command = resp
        content = _single_line(template).format(
            rcpt=msg.recipient,
            local=msg.recipient.split("@", 1)[0],
            domain=msg.domain,
            sender_domain=msg.sender.split("@", 1)[1],
            src_ip=self._src_ip(),
            tid=self._token(),
            ts=self.now,
            mx=mx,
        )
        enh: dict[str, int] | None = None
        if enhanced and enhanced.count(".") == 2:
            cls, subject, detail = (int(x) for x in enhanced.split("."))
            enh = {"class": cls, "subject": subject, "detail": detail}
        elif enhanced:  # not an RFC 3463 code (e.g. Yahoo's "552 1 ..."): kept in the text
            content = f"{enhanced} {content}"
        return {"code": code, "enhanced_code": enh, "content": content, "command": command}

    # -- record construction -------------------------------------------------------------------
    def _base(self, kind: str, msg: _Message) -> dict[str, Any]:
        rng = self.rng
        mid_domain = msg.sender.split("@", 1)[1]
        return {
            "type": kind,
            "id": msg.spool_id,
            "sender": msg.sender,
            "recipient": msg.recipient,
            "queue": msg.queue or f"{msg.campaign}:{msg.tenant}@{msg.domain}",
            "site": "",
            "size": msg.size,
            "response": None,
            "peer_address": None,
            "timestamp": self.now,
            "event_time": rfc3339(self.now_ns),
            "created": msg.created,
            "created_time": rfc3339(msg.created_ns),
            "num_attempts": msg.attempts,
            "bounce_classification": "Uncategorized",
            "egress_pool": f"{msg.tenant}-pool",
            "egress_source": f"{msg.tenant}-ip{rng.randint(1, 4)}",
            "source_address": None,
            "feedback_report": None,
            "meta": {
                "tenant": msg.tenant,
                "campaign": msg.campaign,
                "mailing_id": f"{msg.tenant}-{msg.created % 100000:05d}",
                "customer_ref": f"cust-{rng.randint(100000, 999999)}",
                "reception_protocol": "ESMTP",
                "received_from": "10.20.0.15:48122",
            },
            "headers": {
                "Subject": msg.subject,
                "From": f'"{msg.tenant.title()}" <no-reply@{mid_domain}>',
                "To": f"<{msg.recipient}>",
                "Message-ID": f"<{msg.spool_id[:16]}.{msg.created}@{mid_domain}>",
                "List-Unsubscribe": f"<https://{mid_domain}/u/{msg.spool_id[:20]}>",
            },
            "delivery_protocol": None,
            "reception_protocol": "ESMTP",
            "nodeid": self.nodeid,
        }

    def _outbound(self, rec: dict[str, Any], msg: _Message) -> str:
        """Fill the delivery-attempt fields; returns the MX host name."""
        p = msg.provider
        mx = p.mx if p else f"mx.{msg.domain}."
        rec["site"] = f"{rec['egress_source']}->{p.site if p else 'mx.' + msg.domain}"
        rec["peer_address"] = {
            "name": mx,
            "addr": f"{p.ip_prefix}.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
            if p
            else "",
        }
        rec["delivery_protocol"] = "ESMTP"
        rec["source_address"] = {"address": f"{self._src_ip()}:{self.rng.randint(30000, 60999)}"}
        if p is not None:  # KumoMTA omits the TLS fields (no null) when there was no TLS
            rec["tls_cipher"] = "TLS_AES_256_GCM_SHA384"
            rec["tls_protocol_version"] = "TLSv1.3"
            rec["tls_peer_subject_name"] = [f"CN={mx.rstrip('.')}"]
        rec["session_id"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return mx

    def _no_delivery(self, rec: dict[str, Any]) -> None:
        """Records logged by the queue machinery, not a delivery attempt: no egress, no protocol."""
        rec.update(egress_pool=None, egress_source=None, delivery_protocol=None)

    def _failure(self, msg: _Message, transient: bool) -> Resp:
        p, rng = msg.provider, self.rng
        if p is None:
            pool = [r for r in _DNS_FAILURES if (r[0] < 500) == transient] or list(_DNS_FAILURES)
            return rng.choice(pool)
        if transient and rng.random() < 0.15:
            return rng.choice(_CONNECT_FAILURES)
        weights = self.failure_weights[p.domain]
        wanted = [
            (r, w) for r, w in zip(p.failures, weights, strict=True) if (r[0] < 500) == transient
        ]
        if not wanted:  # the provider has no such answer: the connection itself failed
            return rng.choice(_CONNECT_FAILURES if transient else _DNS_FAILURES[::2])
        return rng.choices([r for r, _ in wanted], weights=[w for _, w in wanted])[0]


class _Reports(_Parts):
    """Records that are not a step of a message's own lifecycle: the reports that arrive
    about it (OOB, Feedback) and the log hook's bookkeeping of shipping a record."""

    def _shipped(self, shipped: dict[str, Any], name: str) -> list[dict[str, Any]]:
        """What KumoMTA logs locally of shipping ``shipped`` through log hook ``name``: the
        delivery of the message the hook made of it (``policy-extras/log_hooks.lua``), to the
        hook's queue by its Lua constructor, with the shipped record's sender and recipient and
        ``reception_protocol`` "LogRecord"; now and then a failed attempt first (or instead)."""
        rng = self.hook_rng
        created_ns = int(shipped["timestamp"]) * _NS + rng.randrange(1_000_000, 50_000_000)
        base = self._hook_delivery(shipped, f"{name}.log_hook", created_ns)
        attempts: list[tuple[str, dict[str, Any]]] = []
        roll = rng.random()
        if roll < 0.08:  # the broker was down: retried later
            attempts.append(("TransientFailure", self._hook_response(_HOOK_FAILURES[0])))
        if roll < 0.02:  # refused for good: the record never reached the broker
            attempts.append(("Bounce", self._hook_response(_HOOK_FAILURES[1])))
        else:
            disposition = (
                f"sent to {name}: partition {rng.randrange(12)} offset {rng.randrange(10**7)}"
            )
            attempts.append(("Delivery", _internal(200, disposition)))
        out = []
        t_ns = created_ns
        for n, (kind, response) in enumerate(attempts):
            t_ns += rng.randrange(2_000_000, 80_000_000) + n * 60 * _NS  # retried a minute on
            out.append(
                {
                    **base,
                    "type": kind,
                    "response": response,
                    "timestamp": t_ns // _NS,
                    "event_time": rfc3339(t_ns),
                    "num_attempts": n,
                }
            )
        return out

    def _hook_delivery(
        self, shipped: dict[str, Any], queue: str, created_ns: int
    ) -> dict[str, Any]:
        """The fields every attempt to deliver the hook's message of ``shipped`` shares."""
        rng = self.hook_rng
        meta = {**shipped["meta"], "reception_protocol": LOG_RECORD_PROTOCOL}
        return {
            "type": "Delivery",
            "id": f"{rng.getrandbits(128):032x}",
            "sender": shipped["sender"],
            "recipient": shipped["recipient"],
            "queue": queue,
            "site": f"unspecified->{queue}@lua:make.{queue}",
            "size": len(orjson.dumps(shipped)) + 1,  # the body: the record's JSON line
            "response": None,
            "peer_address": {"name": f"Lua via make.{queue}", "addr": "0.0.0.0"},
            "timestamp": 0,
            "event_time": "",
            "created": created_ns // _NS,
            "created_time": rfc3339(created_ns),
            "num_attempts": 0,
            "bounce_classification": "Uncategorized",
            "egress_pool": "unspecified",
            "egress_source": "unspecified",
            "source_address": None,
            "feedback_report": None,
            "meta": meta,
            "headers": {},
            "delivery_protocol": "Lua",
            "reception_protocol": LOG_RECORD_PROTOCOL,
            "nodeid": self.nodeid,
            "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        }

    @staticmethod
    def _hook_response(resp: Resp) -> dict[str, Any]:
        return _internal(resp[0], resp[2])

    def _inbound_report(self, rec: dict[str, Any]) -> None:
        """An OOB or Feedback record is logged when the report arrives: the report message has
        its own spool id, was just received, and was never sent through an egress source."""
        rec.update(
            id=self._hex(128),
            created=self.now,
            created_time=rfc3339(self.now_ns),
            num_attempts=0,
            egress_pool=None,
            egress_source=None,
            delivery_protocol=None,
            reception_protocol="ESMTP",
            session_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
        )

    def _oob(self, rec: dict[str, Any], msg: _Message) -> None:
        """An RFC 3464 report for the message: one OOB record per failed recipient, with the
        original envelope, the reporter as peer, and the report's last-attempt date as time."""
        rng = self.rng
        self._inbound_report(rec)
        rec["size"] = 0
        diag = rng.choices(_OOB_DIAGNOSTICS, weights=_zipf_weights(len(_OOB_DIAGNOSTICS)))[0]
        rec["response"] = self._render(diag, msg, "")
        p = msg.provider
        reporter = p.mx.rstrip(".") if p else f"mx.{msg.domain}"
        addr = f"{p.ip_prefix}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" if p else "0.0.0.0"
        rec["peer_address"] = {"name": reporter, "addr": addr}
        last_attempt = self.now - rng.randint(1, 5)  # the report's date: whole seconds
        rec["timestamp"], rec["event_time"] = last_attempt, rfc3339(last_attempt * _NS)

    def _feedback(self, rec: dict[str, Any], msg: _Message) -> None:
        """An ARF report (RFC 5965) about the message, as KumoMTA logs it: the record is the
        report's own reception (sent by the feedback loop to the tenant's complaint address),
        and ``feedback_report`` holds the parsed report, whose ``original_rcpto_to`` (KumoMTA's
        spelling) and ``supplemental_trace`` (decoded from KumoMTA's trace header in the
        returned headers) name the original recipient."""
        rng = self.rng
        self._inbound_report(rec)
        agent, reporter = rng.choice(_FEEDBACK_AGENTS)
        if not self.feedback_deck:
            self.feedback_deck = list(_FEEDBACK_DECK)
            rng.shuffle(self.feedback_deck)
        ftype = self.feedback_deck.pop()
        sender_domain = msg.sender.split("@", 1)[1]
        fbl = f"fbl@{sender_domain}"
        rec.update(
            sender=f"fbl-reports@{reporter}",
            recipient=fbl,
            queue=sender_domain,
            size=rng.randint(4_000, 12_000),
            meta={
                "reception_protocol": "ESMTP",
                "received_from": f"203.0.113.{rng.randint(1, 254)}:25",
            },
            headers={
                "Subject": f"Complaint about message from {sender_domain}",
                "From": f"<fbl-reports@{reporter}>",
                "To": f"<{fbl}>",
                "Message-ID": f"<arf.{self._hex(64)}@{reporter}>",
            },
        )
        rec["response"] = {"code": 250, "enhanced_code": None, "content": "", "command": None}
        rec["peer_address"] = {"name": reporter, "addr": f"203.0.113.{rng.randint(1, 254)}"}
        src_ip = self._src_ip()
        arrival = msg.created + rng.randint(60, 3600)
        rec["feedback_report"] = self._arf_report(msg, ftype, agent, reporter, src_ip, arrival)

    def _arf_report(
        self, msg: _Message, ftype: str, agent: str, reporter: str, src_ip: str, arrival: int
    ) -> dict[str, Any]:
        """The parsed ARF report about ``msg``, as KumoMTA logs it in ``feedback_report``."""
        sender_domain = msg.sender.split("@", 1)[1]
        message_id = f"<{msg.spool_id[:16]}.{msg.created}@{sender_domain}>"
        trace = {"recipient": msg.recipient, "tenant": msg.tenant, "campaign": msg.campaign}
        # KumoMTA's trace header: base64 of the trace as JSON, tagged with its "_@_" marker.
        kumo_ref = base64.b64encode(orjson.dumps({"_@_": "\\_/", **trace})).decode()
        return {
            "feedback_type": ftype,
            "user_agent": agent,
            "version": "1",  # KumoMTA keeps the Version field as text
            "arrival_date": rfc3339(arrival * _NS),
            "incidents": self.rng.choice((None, None, 1)),
            "original_envelope_id": None,
            "original_mail_from": msg.sender,
            "reporting_mta": {"mta_type": "dns", "name": reporter},
            "source_ip": src_ip,
            "authentication_results": [
                f"{reporter}; spf=pass smtp.mailfrom={sender_domain};"
                f" dkim=pass header.d={sender_domain}"
            ],
            "original_rcpto_to": [msg.recipient],
            "reported_domain": [sender_domain],
            "reported_uri": [f"https://{sender_domain}/u/{msg.spool_id[:20]}"],
            "extensions": {},
            "original_message": (
                f"Received: from {sender_domain} ([{src_ip}]) by {reporter};"
                f" {datetime.fromtimestamp(arrival, UTC):%a, %d %b %Y %H:%M:%S +0000}\n"
                f"From: <no-reply@{sender_domain}>\nTo: <{msg.recipient}>\n"
                f"Subject: {msg.subject}\nMessage-ID: {message_id}\n"
                f"X-KumoRef: {kumo_ref}\n"
            ),
            "supplemental_trace": trace,
        }


class _Generator(_Reports):
    """Messages in flight, each with its planned records, interleaved in event time."""

    # -- lifecycles ----------------------------------------------------------------------------
    def _new_message(self) -> _Message:
        rng = self.rng
        if rng.random() < 0.02:
            provider, domain = None, rng.choice(_DEAD_DOMAINS)
        else:
            provider = rng.choices(PROVIDERS, weights=self.provider_weights)[0]
            domain = provider.domain
            if provider.extra_domains and rng.random() < 0.35:
                domain = rng.choice(provider.extra_domains)
        t = rng.randrange(len(_TENANTS))
        sender_domain = _SENDER_DOMAINS[t]
        camp = rng.choice(_CAMPAIGNS)
        msg = _Message(
            spool_id=self._hex(128),
            sender=f"bounces+{self._hex(32)}@{sender_domain}",
            recipient=f"{self._local_part()}@{domain}",
            provider=provider,
            domain=domain,
            created_ns=self.now_ns,
            tenant=_TENANTS[t],
            campaign=camp,
            subject=rng.choice(_SUBJECTS).format(n=rng.randint(10000, 99999), month="January"),
            size=rng.randint(3_000, 90_000),
            plan=[],
        )
        msg.plan = self._plan(msg)
        return msg

    def _plan(self, msg: _Message) -> list[str]:
        rng = self.rng
        plan = ["Reception"]
        if msg.provider is None:  # dead domain: retries on DNS errors, then bounce or expire
            plan += ["TransientFailure"] * rng.randint(0, 2)
            plan.append(rng.choice(("Bounce", "Bounce", "Expiration")))
            return plan
        r = rng.random()
        if r < 0.42:
            plan.append("Delivery")
        elif r < 0.51:
            plan += ["TransientFailure"] * rng.randint(1, 3) + ["Delivery"]
        elif r < 0.67:
            plan.append("Bounce")
        elif r < 0.75:
            plan += ["TransientFailure"] * rng.randint(1, 3) + ["Bounce"]
        elif r < 0.78:
            plan += ["TransientFailure"] * rng.randint(2, 4) + ["Expiration"]
        elif r < 0.795:
            plan += ["Delayed", "AdminBounce"]
        elif r < 0.82:
            plan += ["Delayed", "Delivery"]
        elif r < 0.835:  # an operator moved its queue to another route
            plan += ["TransientFailure", "AdminRebind", "Delivery"]
        elif r < 0.85:  # its queue was drained to another node
            plan += ["TransientFailure", "AdminRebind", "XferOut"]
        elif r < 0.865:  # accepted into the deferred-injection queue, then released
            plan += ["DeferredInjectionRebind", "Delivery"]
        elif r < 0.88:  # handed over by another node: no Reception here
            plan = ["XferIn", "Delivery"]
        elif r < 0.93:
            plan += ["Delivery", "OOB"]
        else:
            plan += ["Delivery", "Feedback"]
        return plan

    def next_record(self) -> dict[str, Any]:
        if self.hook_pending and self.hook_rng.random() < 0.5:
            return self.hook_pending.pop(0)
        rng = self.rng
        self.now_ns += rng.randrange(0, self.max_step_ns)
        if rng.random() < 0.03:  # inbound rejections have no lifecycle of their own
            rec = self._rejection()
        else:
            while len(self.active) < 64:
                self.active.append(self._new_message())
            idx = rng.randrange(len(self.active))
            msg = self.active[idx]
            kind = msg.plan.pop(0)
            if not msg.plan:
                self.active[idx] = self.active[-1]
                self.active.pop()
            rec = self._record(kind, msg)
        if self.log_hook is not None and (
            rec["type"] == "Rejection" or rec["meta"].get("tenant") in _HOOK_TENANTS
        ):
            self.hook_pending += self._shipped(rec, self.log_hook)
        return rec

    def _record(self, kind: str, msg: _Message) -> dict[str, Any]:
        rng = self.rng
        if kind == "Reception":
            msg.session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        rec = self._base(kind, msg)
        if kind in ("Reception", "Rejection"):  # the inbound session (omitted when there is none)
            rec["session_id"] = msg.session_id
        if kind == "Reception":
            self._no_delivery(rec)
            http = rng.random() < 0.4
            rec["reception_protocol"] = "HTTP" if http else "ESMTP"
            rec["meta"]["reception_protocol"] = rec["reception_protocol"]
            rec["peer_address"] = {
                "name": "" if http else "injector-03.app.internal",
                "addr": f"10.20.0.{rng.randint(10, 30)}",
            }
            rec["response"] = {"code": 250, "enhanced_code": None, "content": "", "command": None}
        elif kind in ("Delivery", "TransientFailure", "Bounce"):
            msg.attempts += 1
            rec["num_attempts"] = msg.attempts
            mx = self._outbound(rec, msg)
            if kind == "Delivery":
                assert msg.provider is not None
                resp: Resp = (250, "2.0.0", msg.provider.ok, ".")
            else:
                resp = self._failure(msg, transient=kind == "TransientFailure")
            rec["response"] = self._render(resp, msg, mx)
            if msg.provider is None:
                rec["peer_address"] = None  # nobody answered: KumoMTA wrote the response
        elif kind == "OOB":
            self._oob(rec, msg)
        elif kind == "Feedback":
            self._feedback(rec, msg)
        else:
            self._queue_record(kind, rec, msg)
        return rec

    def _queue_record(self, kind: str, rec: dict[str, Any], msg: _Message) -> None:
        """A record the queue machinery logs (no delivery attempt): its response and route."""
        rng = self.rng
        if kind == "Expiration":
            self._no_delivery(rec)
            rec["response"] = self._render(_EXPIRATION, msg, "")
        elif kind == "AdminBounce":
            self._no_delivery(rec)
            rec["response"] = self._render(rng.choice(_ADMIN_BOUNCES), msg, "")
        elif kind == "Delayed":
            self._no_delivery(rec)
            context, due_s = rng.choice(_DELAY_CONTEXTS)
            due_in = due_s * _NS - rng.randrange(_NS)
            rec["response"] = _internal(
                400,
                f"Context: {context}. Next due in {_duration(due_in)} at"
                f" {rfc3339(self.now_ns + due_in)}",
            )
        elif kind == "AdminRebind":
            self._no_delivery(rec)
            old = rec["queue"]
            if msg.plan and msg.plan[0] == "XferOut":
                msg.queue, reason = _XFER_QUEUE, "drain for node maintenance"
            else:
                i = rng.randrange(len(_REBIND_ROUTES))
                msg.queue, reason = f"{old}!{_REBIND_ROUTES[i]}", _REBIND_REASONS[i]
            rec["queue"] = msg.queue
            rec["response"] = _internal(250, f"Rebound from {old} to {msg.queue}: {reason}")
        elif kind == "XferOut":
            self._no_delivery(rec)
            rec["site"] = _XFER_QUEUE
            rec["delivery_protocol"] = "xfer"
            rec["response"] = _internal(250, f"new id is {self._hex(128)}")
        elif kind == "XferIn":
            self._no_delivery(rec)
            msg.xfer_from = f"10.20.0.{rng.randint(11, 14)}"
            rec["peer_address"] = {
                "name": "",
                "addr": f"{msg.xfer_from}:{rng.randint(30000, 60999)}",
            }
            rec["delivery_protocol"] = "xfer"
            rec["response"] = _internal(250, "")
        elif kind == "DeferredInjectionRebind":
            self._no_delivery(rec)
            rec["site"] = _DEFERRED_QUEUE
            rec["delivery_protocol"] = "DeferredSmtpInjection"
            rec["response"] = _internal(250, "ok")

    def _rejection(self) -> dict[str, Any]:
        """A refusal of KumoMTA's SMTP listener, as its ``smtp_server`` logs one: no message
        (``id`` ""), the client's command line as sent, and the transaction as it stood: for
        a refused ``RCPT TO`` the last recipient accepted before (or ""), not the refused one
        (``msg.recipient``, only in the command)."""
        rng = self.rng
        msg = self._new_message()
        msg.session_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        rec = self._base("Rejection", msg)
        # Refused during the SMTP dialogue: nothing was queued, no body or headers were seen.
        rec.update(id="", queue="", size=0, egress_pool=None, egress_source=None, headers={})
        rec.update(created=rec["timestamp"], created_time=rec["event_time"], num_attempts=0)
        rec["session_id"] = msg.session_id
        rec["meta"] = {"reception_protocol": "ESMTP", "received_from": rec["meta"]["received_from"]}
        rec["reception_protocol"] = None
        rec["peer_address"] = {
            "name": f"client-{rng.randint(1, 999)}.example.net",
            "addr": f"192.0.2.{rng.randint(1, 254)}",
        }
        resp = rng.choice(_REJECTION_DECK)
        response = rec["response"] = self._render(resp, msg, "")
        phase = resp[3]
        smtp = self.smtp_rng
        accepted = smtp.choice(self.active).recipient if self.active and smtp.random() < 0.6 else ""
        if phase == "RCPT TO":  # some clients send the verb in lower case
            verb = "rcpt TO" if smtp.random() < 0.2 else "RCPT TO"
            response["command"] = f"{verb}:<{msg.recipient}>"
            rec["recipient"] = accepted
        elif phase == "MAIL FROM":  # refused before a transaction began: no state yet
            response["command"] = f"MAIL FROM:<{msg.sender}>"
            rec.update(sender="", recipient="")
        elif phase == "DATA" and response["code"] == 552:  # while reading the message
            rec["recipient"] = accepted or msg.recipient
        else:  # a connection's refusal, or after the transaction was handed over: no state
            rec.update(sender="", recipient="")
        return rec


def _kind(record: dict[str, Any]) -> str:
    return "classify" if effective_type(record) in CLASSIFIABLE_TYPES else "pass"


def _headers(record: dict[str, Any]) -> Headers:
    # What a log shipper typically attaches: the record type and the producing node.
    return [("kumo.type", str(record["type"]).encode()), ("kumo.node", b"mta-02")]


def generate_records(
    n: int, *, seed: int = 0, records_per_second: float = 4.0, log_hook: str | None = None
) -> Iterator[dict[str, Any]]:
    """``n`` well-formed KumoMTA log records (dicts), deterministic for a given seed.

    Their event times advance by ``records_per_second`` on average: the bundled sample spreads
    its records over about four minutes, a benchmark of live traffic packs them as densely as
    a busy MTA logs them (event time decides how many stats windows and rows they fill).
    """
    gen = _Generator(seed, records_per_second, log_hook)
    for _ in range(n):
        yield gen.next_record()


def to_message(record: dict[str, Any]) -> SampleMessage:
    """The Kafka message for a record: key = spool id, compact JSON value."""
    return SampleMessage(
        key=str(record["id"]).encode(),
        value=orjson.dumps(record),
        headers=_headers(record),
        kind=_kind(record),
    )


def make_malformed(
    reason: str,
    rng: random.Random,
    record: dict[str, Any],
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> SampleMessage:
    """A broken message of the given reason, derived from a real-looking ``record``."""
    rec = dict(record)
    key = str(rec["id"]).encode()
    if reason == "not-utf8":  # a Latin-1 byte where UTF-8 was expected
        body = orjson.dumps(rec).replace(b'"recipient":"', b'"recipient":"m\xfcller.', 1)
    elif reason == "not-json":  # a record cut short by a crashed shipper
        text = orjson.dumps(rec).decode()  # cut characters, not bytes: it stays valid UTF-8
        body = text[: rng.randint(20, len(text) - 20)].encode()
    elif reason == "not-object":
        body = rng.choice([b"[1, 2, 3]", b'"Bounce"', b"null", b"42", orjson.dumps([rec])])
    elif reason == "missing-type":
        rec.pop("type", None)
        body = orjson.dumps(rec)
    elif reason == "bad-type":
        rec["type"] = rng.choice([7, None, ["Bounce"], {"name": "Bounce"}])
        body = orjson.dumps(rec)
    elif reason == "missing-response":
        rec["type"] = rng.choice(("Bounce", "TransientFailure"))
        rec.pop("response", None)
        body = orjson.dumps(rec)
    elif reason == "bad-response":
        rec["type"] = rng.choice(("Bounce", "TransientFailure"))
        rec["response"] = rng.choice(
            [
                "550 5.1.1 user unknown",
                550,
                {"code": "five-fifty", "content": "user unknown"},
                {"code": 550, "content": 12},
            ]
        )
        body = orjson.dumps(rec)
    elif reason == "too-large":
        rec["type"] = "Bounce"
        rec["meta"] = dict(rec.get("meta") or {})
        rec["meta"]["debug_dump"] = "x" * (max_message_bytes + 1024)
        body = orjson.dumps(rec)
    else:
        raise ValueError(f"unknown malformed reason {reason!r}; known: {MALFORMED_REASONS}")
    return SampleMessage(
        key=key, value=body, headers=[("kumo.node", b"mta-02")], kind=f"malformed:{reason}"
    )


def generate(
    n: int,
    *,
    seed: int = 0,
    malformed_fraction: float = 0.0,
    malformed_reasons: Sequence[str] = MALFORMED_REASONS,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Iterator[SampleMessage]:
    """``n`` Kafka messages, deterministic for a given seed.

    A ``malformed_fraction`` of them (spread evenly over ``malformed_reasons``) are broken in one
    of the ways the worker sends to the dead-letter topic; ``too-large`` ones exceed
    ``max_message_bytes``.
    """
    if not 0.0 <= malformed_fraction <= 1.0:
        raise ValueError("malformed_fraction must be within [0, 1]")
    gen = _Generator(seed)
    bad_rng = random.Random(seed ^ 0x5EED)
    reasons = tuple(malformed_reasons)
    bad_count = 0
    for i in range(n):
        record = gen.next_record()
        # Deterministic spacing: the k-th bad message lands where the fraction says it should.
        if reasons and int((i + 1) * malformed_fraction) > bad_count:
            reason = reasons[bad_count % len(reasons)]
            bad_count += 1
            yield make_malformed(reason, bad_rng, record, max_message_bytes=max_message_bytes)
        else:
            yield to_message(record)


# --------------------------------------------------------------------------------------------
# The bundled sample
# --------------------------------------------------------------------------------------------

BUNDLED_SAMPLE_SIZE = 1000
BUNDLED_SAMPLE_SEED = 2026
#: The bundled sample is a node's local log with a log hook shipping some of its records (so
#: it also holds the hook's bookkeeping records, as real local logs then do).
BUNDLED_SAMPLE_LOG_HOOK = "kafka"


def bundled_sample_path() -> Path:
    """``streamer/devkit/data/sample.jsonl``: one KumoMTA log record per line, as KumoMTA logs."""
    return Path(str(resources.files("streamer.devkit") / "data" / "sample.jsonl"))


def write_bundled_sample(path: Path | None = None) -> Path:
    """(Re)generate the bundled sample; it is a pure function of the constants above."""
    path = path or bundled_sample_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for rec in generate_records(
            BUNDLED_SAMPLE_SIZE, seed=BUNDLED_SAMPLE_SEED, log_hook=BUNDLED_SAMPLE_LOG_HOOK
        ):
            fh.write(orjson.dumps(rec) + b"\n")
    return path


def load_bundled_sample(path: Path | None = None) -> list[SampleMessage]:
    """The bundled sample as Kafka messages (key = spool id)."""
    path = path or bundled_sample_path()
    with path.open("rb") as fh:
        return [to_message(orjson.loads(line)) for line in fh if line.strip()]


# python -m streamer.devkit.sample: regenerate streamer/devkit/data/sample.jsonl
if __name__ == "__main__":
    print(write_bundled_sample())
