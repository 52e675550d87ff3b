"""``streamer bench classify``: classifier throughput against a naive stdlib ``re`` loop.

Everything is measured in the same process and run, on one thread: the built-in ~150-rule set
(or ``--rules``), generated 2,000- and 10,000-rule sets, uncached and with the caches, and the
slowest of a few 16 KB adversarial lines. Each measurement is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.classifier import Classifier, ClassifierPool
from streamer.rules import RuleSet, load_rules

# --------------------------------------------------------------------------------------------
# Built-in realistic data

#: Provider-style text rules (first, like a user's own file) ...
_TEXT_RULES: dict[str, list[str]] = {
    "InvalidRecipient": [
        r"(?i)user (?:unknown|not found|does not exist)",
        r"(?i)no such (?:user|mailbox|recipient)",
        r"(?i)recipient address rejected: (?:user unknown|undeliverable address)",
        r"(?i)mailbox (?:unavailable|not found|does not exist)",
        r"(?i)invalid (?:recipient|mailbox|address)",
        r"(?i)the email account that you tried to reach does not exist",
        r"(?i)unknown (?:user|recipient|local part)",
        r"(?i)address (?:rejected|unknown)",
        r"(?i)\baccount (?:is )?(?:unknown|invalid)\b",
        r"^5\d\d[ -]5\.1\.[01]\b",
    ],
    "InactiveMailbox": [
        r"(?i)account (?:has been )?(?:disabled|deactivated|suspended)",
        r"(?i)mailbox (?:is )?(?:disabled|inactive|locked)",
        r"(?i)this account has been (?:closed|terminated)",
        r"^5\d\d[ -]5\.2\.1\b",
    ],
    "QuotaIssues": [
        r"(?i)mailbox (?:is )?full",
        r"(?i)over (?:the )?quota",
        r"(?i)quota (?:exceeded|limit)",
        r"(?i)insufficient (?:storage|disk space)",
        r"(?i)user has exceeded (?:their|his|her) storage",
        r"^[45]\d\d[ -][45]\.2\.2\b",
    ],
    "SpamBlock": [
        r"(?i)\bspamhaus\b",
        r"(?i)\b(?:barracuda|spamcop|sorbs|uceprotect)\b",
        r"(?i)blocked using [a-z0-9.-]+\.(?:org|net|com)",
        r"(?i)listed (?:on|in|at) (?:an? )?(?:rbl|dnsbl|blacklist|blocklist)",
        r"(?i)ip (?:address )?(?:\d{1,3}\.){3}\d{1,3} (?:is )?(?:blocked|blacklisted|listed)",
        r"(?i)client host \[[0-9.]+\] blocked",
        r"(?i)poor reputation",
        r"(?i)\bblock(?:ed|list)\b.*\breputation\b",
    ],
    "SpamContent": [
        r"(?i)message (?:content )?(?:rejected|blocked) (?:as|due to) spam",
        r"(?i)spam (?:content|message) detected",
        r"(?i)looks like spam",
        r"(?i)identified as spam",
        r"(?i)\bUBE\b",
        r"(?i)content (?:filter|policy) (?:rejection|violation)",
    ],
    "ProhibitedAttachment": [
        r"(?i)attachment (?:type )?(?:not allowed|prohibited|blocked)",
        r"(?i)\.(?:exe|scr|bat|com|pif|vbs|js) (?:files? )?(?:are )?not allowed",
    ],
    "VirusRelated": [
        r"(?i)virus (?:detected|found|infected)",
        r"(?i)\b(?:malware|trojan|worm)\b",
    ],
    "RelayDenied": [
        r"(?i)relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited)",
        r"(?i)we do not relay",
        r"(?i)not allowed to relay",
    ],
    "AuthenticationFailed": [
        r"(?i)\b(?:spf|dkim|dmarc)\b.*\b(?:fail|failed|failure|reject)",
        r"(?i)authentication (?:required|failed)",
        r"(?i)unauthenticated (?:email|mail|sender)",
        r"^5\d\d[ -]5\.7\.(?:2[3-9]|1)\b",
    ],
    "DNSFailure": [
        r"(?i)dns (?:lookup |resolution )?(?:failed|failure|error|timeout)",
        r"(?i)\bNXDOMAIN\b",
        r"(?i)no (?:mx|a) record",
    ],
    "BadDomain": [
        r"(?i)domain (?:not found|does not exist|unknown)",
        r"(?i)host (?:or domain name )?not found",
        r"(?i)unrouteable address",
    ],
    "RoutingErrors": [r"(?i)mail loop(?:s)? detected", r"(?i)too many hops"],
    "TransientFailure": [
        r"(?i)try (?:again )?later",
        r"(?i)temporar(?:y|ily) (?:failure|deferred|unavailable|rejected)",
        r"(?i)greylist(?:ed|ing)",
        r"(?i)rate limit(?:ed)?",
        r"(?i)too many (?:connections|messages|concurrent)",
        r"(?i)service (?:is )?(?:temporarily )?unavailable",
        r"^4\d\d[ -]4\.\d{1,3}\.\d{1,3}\b",
    ],
    "BadConnection": [
        r"(?i)connection (?:refused|reset|timed out|closed)",
        r"(?i)lost connection",
        r"(?i)tls (?:handshake|negotiation) failed",
    ],
    "NoAnswerFromHost": [r"(?i)no answer from host", r"(?i)read timeout", r"(?i)timed out"],
    "MessageExpired": [r"(?i)message expired", r"(?i)exceeded (?:the )?retry (?:period|limit)"],
    "PolicyRelated": [
        r"(?i)policy (?:rejection|violation|reasons)",
        r"(?i)rejected (?:by|due to) (?:local )?policy",
        r"(?i)sender (?:address )?rejected",
        r"(?i)not accepted (?:here|for policy reasons)",
        r"(?i)message rejected: .*(?:policy|dmarc)",
    ],
    "ProtocolErrors": [
        r"(?i)syntax error",
        r"(?i)bad sequence of commands",
        r"(?i)command (?:not recognized|unrecognized)",
        r"(?i)line too long",
    ],
    "ContentRelated": [r"(?i)message (?:size )?exceeds", r"(?i)message too (?:big|large)"],
    "InvalidSender": [
        r"(?i)sender (?:domain )?(?:invalid|unknown|not found)",
        r"(?i)return path",
    ],
    "AutoReply": [r"(?i)out of (?:the )?office", r"(?i)auto(?:matic)?[- ]?reply"],
    "BadConfiguration": [r"(?i)misconfigured", r"(?i)configuration error"],
    "TooManyRecipients": [r"(?i)too many recipients"],
    "ChallengeResponse": [r"(?i)please (?:verify|confirm) (?:you are human|your address)"],
}

#: ... then IANA-style enhanced-status-code rules (last, like KumoMTA's iana.toml).
_IANA_CODES: dict[str, list[str]] = {
    "InvalidRecipient": ["1.0", "1.1", "1.3", "1.6", "1.10"],
    "BadDomain": ["1.2"],
    "InvalidSender": ["1.7", "1.8"],
    "RoutingErrors": ["1.4", "1.5", "4.0", "4.3", "4.4", "4.6", "4.7"],
    "InactiveMailbox": ["2.1"],
    "QuotaIssues": ["2.2", "3.1", "2.0"],
    "ContentRelated": ["2.3", "3.4", "6.0", "6.1", "6.2", "6.3", "6.4", "6.5"],
    "BadConfiguration": ["3.0", "3.2", "3.5"],
    "ProtocolErrors": ["3.3", "5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6"],
    "BadConnection": ["4.1", "4.2"],
    "NoAnswerFromHost": ["4.5"],
    "PolicyRelated": ["7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "7.8", "7.9"],
    "SpamRelated": ["7.7", "7.13", "7.14", "7.15", "7.16", "7.17", "7.18", "7.19", "7.20"],
    "AuthenticationFailed": ["7.23", "7.24", "7.25", "7.26", "7.27"],
    "VirusRelated": ["7.12"],
    "RelayingIssues": ["7.10", "7.11"],
}


def _toml(rules: dict[str, list[str]]) -> str:
    lines = ["[rules]"]
    for label, pats in rules.items():
        lines.append(f"{label} = [" + ", ".join("'" + p + "'" for p in pats) + "]")
    return "\n".join(lines) + "\n"


def builtin_rules_toml() -> list[str]:
    """The built-in realistic rule set (about 150 patterns): a text-rules file, then IANA."""
    iana: dict[str, list[str]] = {}
    for label, codes in _IANA_CODES.items():
        for code in codes:
            subject, detail = code.split(".")
            iana.setdefault(label, []).append(rf"^[45]\d\d [45]\.{subject}\.{detail}\b")
    return [_toml(_TEXT_RULES), _toml(iana)]


_RESPONSES = [
    "550 5.1.1 <{addr}>: Recipient address rejected: User unknown in virtual mailbox table",
    "550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking"
    " the recipient's email address for typos or unnecessary spaces. {id} - gsmtp",
    "552 5.2.2 <{addr}>: mailbox is full (quota {n}MB exceeded)",
    "421 4.7.0 [{ip}] Our system has detected an unusual rate of unsolicited mail. Try later {id}",
    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; {id}",
    "451 4.7.1 Greylisting in action, please come back later ({id})",
    "550 5.7.26 Unauthenticated email from {dom} is not accepted due to domain's DMARC policy",
    "553 5.7.1 <{addr}>: Sender address rejected: not owned by user {id}",
    "450 4.2.1 The user you are trying to contact is receiving mail too quickly {id}",
    "554 5.4.7 [internal] exceeded max time without delivery; last error 421 {id}",
    "550 5.7.1 Message rejected as spam by Content Filtering {id}",
    "421 4.4.2 {dom} Error: timeout exceeded",
    "550 Requested action not taken: mailbox unavailable ({id})",
    "530 5.7.0 Must issue a STARTTLS command first {id}",
    "501 5.5.4 Syntax error in parameters or arguments {id}",
    "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [{id}]",
    "554 Transaction failed: {n} unexpected condition {id}",
    "452 4.5.3 Too many recipients {id}",
    "550 5.2.1 The email account that you tried to reach is disabled. {id}",
    "250 2.0.0 OK {id} - delivered",
    "421 4.3.0 Temporary System Problem. Try again later ({n}). {id}",
    "550 permanent failure for one or more recipients ({addr}:blocked)",
    "554 5.7.9 Message not accepted for policy reasons. {id}",
    "550 5.7.606 Access denied, banned sending IP [{ip}]. {id}",
    "451 Temporary local problem - please try later {id}",
    "553 sorry, that domain isn't in my list of allowed rcpthosts {id}",
    "550 Die Adresse <{addr}> ist unbekannt. Benutzer existiert nicht. Grüße {id}",
    "550 该用户不存在 {addr} {id}",
    "554 Le message a été refusé: contenu indésirable {id}",
    "421 Service not available, closing transmission channel {id}",
]


def line_mix(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct realistic response lines (templates with varying ids and addresses)."""
    rnd = random.Random(seed)
    doms = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "mail.ru", "web.de"]
    out = []
    for i in range(n):
        tpl = _RESPONSES[rnd.randrange(len(_RESPONSES))]
        out.append(
            tpl.format(
                addr=f"user{rnd.randrange(10**6)}@{rnd.choice(doms)}",
                dom=rnd.choice(doms),
                ip=".".join(str(rnd.randrange(256)) for _ in range(4)),
                id=f"{rnd.getrandbits(40):x}.{i}",
                n=rnd.randrange(10_000),
            )
        )
    return out


def repeated_mix(distinct: Sequence[str], n: int, seed: int = 1) -> list[str]:
    """A stream where a few lines dominate (Zipf-like), as real bounce traffic does."""
    rnd = random.Random(seed)
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(distinct))]
    return rnd.choices(list(distinct), weights=weights, k=n)


_WORDS = [
    "user",
    "unknown",
    "mailbox",
    "full",
    "quota",
    "exceeded",
    "spam",
    "blocked",
    "rejected",
    "relay",
    "denied",
    "invalid",
    "recipient",
    "address",
    "domain",
    "found",
    "timeout",
    "connection",
    "refused",
    "policy",
    "sender",
    "account",
    "disabled",
    "message",
    "content",
    "filter",
    "reputation",
    "listed",
    "rate",
    "limit",
    "greylisted",
    "temporary",
    "failure",
    "service",
]


def generated_rules_toml(n: int, seed: int = 7) -> str:
    """``n`` distinct generated patterns in the styles real rule files use."""
    rnd = random.Random(seed)
    labels = [lab for lab in _TEXT_RULES]
    by_label: dict[str, list[str]] = {}
    for i in range(n):
        words = rnd.sample(_WORDS, rnd.randint(2, 4))
        style = rnd.randrange(4)
        tag = f"x{i}"
        if style == 0:
            p = "(?i)" + r"\s+".join(words) + " " + tag
        elif style == 1:
            p = rf"^[45]\d\d [45]\.\d\.\d+ .*{' '.join(words)} {tag}"
        elif style == 2:
            p = r"\b" + " (?:is )?".join(words) + rf" {tag}\b"
        else:
            p = "(?i)(?:" + "|".join(words) + rf") \[{tag}\]"
        by_label.setdefault(rnd.choice(labels), []).append(p)
    return _toml(by_label)


def adversarial_lines() -> dict[str, str]:
    """16 KB lines crafted to make backtracking engines explode, by name."""
    k = 16 * 1024
    return {
        "'550 User User ...' vs ^550.+User.+unknown$": "550 " + ("User " * (k // 5)),
        "'550 aaaa...'": "550 " + ("a" * k),
        "'user unknown' x1260": "550 " + ("user unknown " * (k // 13)) + "!",
        # Non-ASCII word characters everywhere: the slowest path (Unicode \b encoding).
        "'é é é ...' (non-ASCII)": "550 " + ("é " * (k // 3)),
        "'xxxx...\\n'": ("x" * (k - 1)) + "\n",
    }


ADVERSARIAL_RULE = r"^550.+User.+unknown$"

# --------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Row:
    case: str
    rules: int
    per_second: float
    note: str = ""
    ratio: float | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    worst_adversarial_ms: dict[str, float] = field(default_factory=dict)
    compile_seconds: dict[str, float] = field(default_factory=dict)
    thread_scaling: dict[str, float] = field(default_factory=dict)
    #: Fresh-process load of the largest generated set: medians of translate, compile, total.
    load_split: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        w = max(len(r.case) for r in self.rows)
        out = [f"{'case':<{w}}  {'rules':>6}  {'classif./s':>12}  {'vs re loop':>10}  note"]
        for r in self.rows:
            ratio = f"{r.ratio:.1f}x" if r.ratio is not None else ""
            out.append(
                f"{r.case:<{w}}  {r.rules:>6}  {r.per_second:>12,.0f}  {ratio:>10}  {r.note}"
            )
        out.append("")
        for name, sec in self.compile_seconds.items():
            out.append(f"load+compile {name} (in this process): {sec * 1000:.0f} ms")
        if self.load_split:
            ls = self.load_split
            out.append(
                f"load {ls['rules']:.0f} generated rules, fresh process (median of "
                f"{ls['runs']:.0f}): {ls['total_ms']:.0f} ms = translate {ls['translate_ms']:.0f}"
                f" ms (load_rules) + compile {ls['compile_ms']:.0f} ms (RE2 set)"
            )
        out.append("adversarial 16 KB lines (median of 5; first run separately):")
        for name, ms in self.worst_adversarial_ms.items():
            out.append(f"  {name}: {ms:.3f} ms")
        for name, val in self.thread_scaling.items():
            out.append(f"threads, {name}: {val:,.0f} classif./s")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [r.__dict__ for r in self.rows],
            "worst_adversarial_ms": self.worst_adversarial_ms,
            "compile_seconds": self.compile_seconds,
            "thread_scaling": self.thread_scaling,
            "load_split": self.load_split,
        }


def _rate(fn: Callable[[str], object], lines: Sequence[str], budget: float) -> float:
    """Classifications per second: repeat passes over ``lines`` for about ``budget`` seconds."""
    best = 0.0
    deadline = time.perf_counter() + budget
    passes = 0
    while passes < 3 or (time.perf_counter() < deadline and passes < 50):
        t0 = time.perf_counter()
        for line in lines:
            fn(line)
        dt = time.perf_counter() - t0
        best = max(best, len(lines) / dt)
        passes += 1
        if time.perf_counter() > deadline and passes >= 1:
            break
    return best


def _naive_re(ruleset: RuleSet) -> tuple[Callable[[str], str], int]:
    """The obvious Python implementation: search each stdlib ``re`` pattern in order."""
    compiled: list[tuple[re.Pattern[str], str]] = []
    skipped = 0
    for rule in ruleset.rules:
        try:
            compiled.append((re.compile(rule.pattern), rule.label))
        except re.error:
            skipped += 1  # Rust-only syntax: the naive loop simply cannot use it

    def classify(line: str) -> str:
        for rx, label in compiled:
            if rx.search(line):
                return label
        return "Uncategorized"

    return classify, skipped


def _load(toml_texts: Sequence[str], tmp: Path, name: str) -> tuple[RuleSet, float]:
    paths = []
    for i, text in enumerate(toml_texts):
        tomllib.loads(text)  # fail early on a generator bug
        paths.append(tmp / f"{name}-{i}.toml")
        paths[-1].write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    ruleset = load_rules(paths)
    Classifier(ruleset, cache_size=0, uncategorized_cache_size=0)
    return ruleset, time.perf_counter() - t0


def load_split(path: str | Path) -> tuple[float, float]:
    """One load of a rules file: seconds to translate (``load_rules``) and to compile."""
    t0 = time.perf_counter()
    ruleset = load_rules([path])
    t1 = time.perf_counter()
    Classifier(ruleset, cache_size=0, uncategorized_cache_size=0)
    return t1 - t0, time.perf_counter() - t1


def fresh_process_load(path: Path, rules: int, runs: int) -> dict[str, float]:
    """Medians of :func:`load_split` over ``runs`` new interpreters: a worker's or
    ``streamer validate``'s cold start, Unicode tables and translation caches included."""
    code = "import json,sys; from streamer.devkit.bench.classify import load_split as f; "
    code += "print(json.dumps(f(sys.argv[1])))"
    samples = []
    for _ in range(runs):
        res = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        samples.append(json.loads(res.stdout))
    return {
        "rules": rules,
        "runs": runs,
        "translate_ms": statistics.median(t for t, _ in samples) * 1000,
        "compile_ms": statistics.median(c for _, c in samples) * 1000,
        "total_ms": statistics.median(t + c for t, c in samples) * 1000,
    }


def _adversarial(classifier: Classifier, report: Report) -> None:
    """Median of 5 runs per line (the first run also builds DFA states: reported apart)."""
    n = len(classifier.rules)
    for name, line in adversarial_lines().items():
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            classifier.classify_uncached(line)
            samples.append(time.perf_counter() - t0)
        key = f"{n} rules, {name}"
        report.worst_adversarial_ms[key] = statistics.median(samples) * 1000
        report.worst_adversarial_ms[key + " (first run)"] = samples[0] * 1000


def _threads(classifier: Classifier, lines: Sequence[str]) -> dict[str, float]:
    out = {}
    for size in (1, 2):
        pool = ClassifierPool(classifier, pool_size=size, back_pressure=131072)
        try:
            t0 = time.perf_counter()
            asyncio.run(pool.classify_batch(list(lines)))
            out[f"pool_size={size}"] = len(lines) / (time.perf_counter() - t0)
        finally:
            pool.close()
    return out


def run(
    rule_files: Sequence[Path] | None = None,
    *,
    lines: int = 20_000,
    budget: float = 2.0,
    large: Sequence[int] = (2_000, 10_000),
    load_runs: int = 3,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Report:
    import tempfile

    report = Report()
    distinct = line_mix(lines)
    stream = repeated_mix(distinct[: max(1, lines // 4)], lines * 2)
    with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmpdir:
        tmp = Path(tmpdir)
        if rule_files:
            t0 = time.perf_counter()
            base = load_rules(rule_files)
            Classifier(base, cache_size=0, uncategorized_cache_size=0)
            report.compile_seconds["given rules"] = time.perf_counter() - t0
            name = "given rules"
        else:
            base, sec = _load(builtin_rules_toml(), tmp, "builtin")
            report.compile_seconds[f"built-in {len(base)} rules"] = sec
            name = "built-in rules"

        progress(f"{name}: naive re loop")
        naive, skipped = _naive_re(base)
        re_rate = _rate(naive, distinct[: max(1, lines // 4)], budget)
        note = f"{skipped} Rust-only patterns skipped" if skipped else ""
        report.rows.append(Row(f"re loop, {name}", len(base), re_rate, note, 1.0))

        progress(f"{name}: streamer uncached")
        uncached = Classifier(base, cache_size=0, uncategorized_cache_size=0)
        rate = _rate(uncached.classify_uncached, distinct, budget)
        report.rows.append(Row(f"streamer uncached, {name}", len(base), rate, "", rate / re_rate))

        progress(f"{name}: streamer cached")
        report.rows.append(_cached_row(base, name, stream, budget, re_rate))
        _adversarial(Classifier(load_rules([_write_adv(tmp, base)]), cache_size=0), report)
        report.thread_scaling = _threads(uncached, distinct)

        for n in large:
            progress(f"{n} generated rules")
            _generated_rows(report, tmp, n, distinct, budget)
        if large and load_runs > 0:
            n = max(large)
            progress(f"loading {n} generated rules in {load_runs} fresh processes")
            path = tmp / f"gen{n}-0.toml"  # written by _load above
            report.load_split = fresh_process_load(path, n, load_runs)
    return report


def _cached_row(
    base: RuleSet, name: str, stream: Sequence[str], budget: float, re_rate: float
) -> Row:
    """The default classifier (with its caches) on a stream that repeats its lines."""
    cached = Classifier(base)
    rate = _rate(cached.classify, stream, budget)
    st = cached.cache_stats()
    hits = st["categorized"]["hits"] + st["uncategorized"]["hits"]
    total = hits + st["categorized"]["misses"] + st["uncategorized"]["misses"]
    return Row(
        f"streamer cached, {name}",
        len(base),
        rate,
        f"hit ratio {hits / max(1, total):.0%} (default 1024/1024 caches)",
        rate / re_rate,
    )


def _generated_rows(
    report: Report, tmp: Path, n: int, distinct: Sequence[str], budget: float
) -> None:
    """``n`` generated rules: their compile time, a re loop against streamer uncached, and
    the adversarial line."""
    gen, sec = _load([generated_rules_toml(n)], tmp, f"gen{n}")
    report.compile_seconds[f"{n} generated rules"] = sec
    naive, _ = _naive_re(gen)
    sample = distinct[: max(50, 200_000 // n)]
    re_rate = _rate(naive, sample, budget / 2)
    report.rows.append(Row(f"re loop, {n} generated", n, re_rate, "", 1.0))
    cls = Classifier(gen, cache_size=0, uncategorized_cache_size=0)
    rate = _rate(cls.classify_uncached, distinct, budget)
    report.rows.append(Row(f"streamer uncached, {n} generated", n, rate, "", rate / re_rate))
    _adversarial(Classifier(load_rules([_write_adv(tmp, gen)]), cache_size=0), report)


def _write_adv(tmp: Path, base: RuleSet) -> Path:
    """The base rules plus the adversarial rule, as one file."""
    path = tmp / f"adv-{len(base)}.json"
    rules: dict[str, list[str]] = {}
    for r in base.rules:
        rules.setdefault(r.label, []).append(r.pattern)
    rules.setdefault("InvalidRecipient", []).append(ADVERSARIAL_RULE)
    path.write_text(json.dumps({"rules": rules}), encoding="utf-8")
    return path
