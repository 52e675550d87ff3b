"""Honest figures for the shipped rules on the development corpus (not a pytest module).

    PYTHONPATH=. python tests/rules_eval.py [--corpus ../shared/corpus] [--json out.json]

The corpus is read from where it lies (it is never copied into the project). Figures:

* all rows / unique lines / real reply codes only: like the corpus' score.py;
* per source: accuracy on each ``mta`` group of rows (the MTA or provider the bounce came from);
* leave-one-source-out (ablation): for each source, the rules whose source comment names that
  source (Postfix, Gmail, Exchange, ...) are removed before its rows are classified. The rules
  were written by hand from public documentation, so a true "train without this source" run is
  impossible; removing every rule that cites the source is the closest honest proxy, and a
  pessimistic one (generic rules cite MTAs as examples of wording many servers share);
* lines not quoted in the project: rows none of whose 6-word runs appears in a rule file or a
  test (so rows whose wording was copied into a rule comment or a test table do not count);
* the hand-written unseen table of tests/test_rules_unseen.py.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from streamer.classifier import Classifier  # noqa: E402
from streamer.config import shipped_rule_files  # noqa: E402

UNCAT = "Uncategorized"
PROVIDER_FILES = ("providers-", "security-gateways", "blocklists")

# Words that name a corpus source in rule comments (default: the source name itself).
SOURCE_KEYWORDS: dict[str, list[str]] = {
    "Office365": ["exchange online", "microsoft 365", "office 365", "outlook", "exchange"],
    "Outlook": ["outlook", "hotmail"],
    "Exchange2003": ["exchange"],
    "Exchange2007": ["exchange"],
    "Gmail": ["gmail", "google"],
    "GSuite": ["gmail", "google"],
    "GoogleGroups": ["google groups", "google"],
    "AmazonSES": ["amazon ses", "ses"],
    "ReceivingSES": ["amazon ses", "ses"],
    "AmazonWorkMail": ["workmail"],
    "Aol": ["aol"],
    "Yahoo": ["yahoo"],
    "Verizon": ["verizon", "yahoo"],
    "MailRu": ["mail.ru"],
    "EinsUndEins": ["1&1", "gmx", "web.de"],
    "GMX": ["gmx", "web.de"],
    "Domino": ["domino"],
    "Notes": ["domino", "notes"],
    "V5sendmail": ["sendmail"],
    "KDDI": ["kddi", "au /"],
    "EZweb": ["ezweb", "kddi"],
    "MessageLabs": ["messagelabs"],
    "IMailServer": ["imail"],
    "MessagingServer": ["messaging server"],
    # standards and anonymised sources: no rule cites them by name
    "RFC3464": [],
    "RFC3834": [],
    "Feedback-Loop": [],
    **{f"X{i}": [] for i in range(1, 7)},
}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def rule_comments(files: Iterable[Path]) -> list[str]:
    """The source comment of every pattern, in load order (the RuleSet's order): its inline
    comment and the comment block above it (a block heads every pattern up to the next block)."""
    out: list[str] = []
    for f in files:
        block: list[str] = []
        after_pattern = False
        in_rules = False
        for raw in f.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line == "[rules]":
                in_rules = True
            elif not in_rules:
                continue
            elif line.startswith("#"):
                if after_pattern:
                    block, after_pattern = [], False
                block.append(line.lstrip("# "))
            elif line.startswith("'"):
                inline = line.split("#", 1)[1] if re.search(r"'\s*,?\s*#", line) else ""
                out.append(" ".join([*block, inline]))
                after_pattern = True
            elif line.endswith("= ["):
                block, after_pattern = [], False
    return out


def load_rows(corpus: Path) -> list[dict[str, Any]]:
    with open(corpus / "dev.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def acceptable(rmap: dict[str, Any], row: dict[str, Any]) -> list[str] | None:
    ent = rmap["reasons"].get(row["sisimai_reason"])
    if ent is None or ent["acceptable"] == "excluded":
        return None
    return list(ent["acceptable"])


def mask(s: str) -> str:
    s = re.sub(r"[\w.+\-=]+@[\w.\-]+", "<addr>", s)
    s = re.sub(r"\b\d{1,3}(?:\.\d{1,3}){3}\b", "<ip>", s)
    s = re.sub(r"\b[\w-]*\d{4,}[\w-]*\b", "<n>", s)
    return re.sub(r"\s+", " ", s).strip().lower()


def figure(pairs: list[tuple[str, list[str]]]) -> dict[str, Any]:
    n = len(pairs)
    ok = sum(1 for p, acc in pairs if p in acc)
    cov = sum(1 for p, _ in pairs if p != UNCAT)
    return {
        "n": n,
        "correct": ok,
        "accuracy": ok / n if n else 0.0,
        "coverage": cov / n if n else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--ngram", type=int, default=6, help="words in a run that counts as quoted")
    a = ap.parse_args(argv)

    rows = load_rows(a.corpus)
    rmap = json.loads((a.corpus / "reason_map.json").read_text(encoding="utf-8"))
    files = shipped_rule_files()
    clf = Classifier.from_files(files)
    rules = clf.rules
    comments = rule_comments(files)
    assert len(comments) == len(rules), (len(comments), len(rules))

    scored = [(r, acc) for r in rows if (acc := acceptable(rmap, r)) is not None]
    pred = {r["id"]: clf.classify(r["line"]).label for r, _ in scored}
    res: dict[str, Any] = {}

    res["all_rows"] = figure([(pred[r["id"]], acc) for r, acc in scored])
    seen: set[tuple[str, str]] = set()
    uniq = []
    for r, acc in scored:
        k = (r["sisimai_reason"], mask(r["line"]))
        if k not in seen:
            seen.add(k)
            uniq.append((pred[r["id"]], acc))
    res["unique_lines"] = figure(uniq)
    res["real_code_only"] = figure(
        [(pred[r["id"]], acc) for r, acc in scored if not r.get("code_inferred")]
    )

    # per source, and leave-one-source-out by ablation of the rules that cite the source
    by_source: dict[str, list[tuple[dict[str, Any], list[str]]]] = collections.defaultdict(list)
    for r, acc in scored:
        by_source[r["mta"]].append((r, acc))
    per_source: dict[str, Any] = {}
    loso_pairs: list[tuple[str, list[str]]] = []
    loso_provider_pairs: list[tuple[str, list[str]]] = []
    for src, items in sorted(by_source.items()):
        kws = SOURCE_KEYWORDS.get(src, [src.lower()])
        pats = [re.compile(r"(^|[^a-z0-9])" + re.escape(k.lower()) + r"([^a-z0-9]|$)") for k in kws]
        drop = {i for i, c in enumerate(comments) if any(p.search(c.lower()) for p in pats)}
        sub = _ablated(clf, drop)
        ab = [(sub(r["line"]), acc) for r, acc in items]
        loso_pairs += ab
        # the milder variant: only provider / gateway knowledge is removed, the generic files
        # (which cite MTAs as examples of wording many servers share) stay
        drop_p = {i for i in drop if Path(rules[i].file).name.startswith(PROVIDER_FILES)}
        sub_p = _ablated(clf, drop_p)
        ab_p = [(sub_p(r["line"]), acc) for r, acc in items]
        loso_provider_pairs += ab_p
        per_source[src] = {
            "rules_removed": len(drop),
            "with_all_rules": figure([(pred[r["id"]], acc) for r, acc in items]),
            "without_its_rules": figure(ab),
            "provider_rules_removed": len(drop_p),
            "without_its_provider_rules": figure(ab_p),
        }
    res["per_source"] = per_source
    macro = [v["without_its_rules"]["accuracy"] for v in per_source.values()]
    macro_all = [v["with_all_rules"]["accuracy"] for v in per_source.values()]
    res["leave_one_source_out"] = {
        **figure(loso_pairs),
        "macro_accuracy": sum(macro) / len(macro),
        "macro_accuracy_with_all_rules": sum(macro_all) / len(macro_all),
        "sources": len(macro),
    }
    macro_p = [v["without_its_provider_rules"]["accuracy"] for v in per_source.values()]
    res["leave_one_source_out_provider_rules"] = {
        **figure(loso_provider_pairs),
        "macro_accuracy": sum(macro_p) / len(macro_p),
    }

    # rows whose wording is not quoted anywhere in the rules or the tests
    project_text = _norm(
        " ".join(
            p.read_text(encoding="utf-8") for p in [*files, *sorted((ROOT / "tests").glob("*.py"))]
        )
    )
    unquoted = []
    for r, acc in scored:
        words = _norm(r["text"] or r["line"]).split()
        n = a.ngram
        runs = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
        if len(words) >= n and any(run in project_text for run in runs):
            continue
        unquoted.append((pred[r["id"]], acc))
    res["not_quoted_in_project"] = figure(unquoted)

    from test_rules_unseen import UNSEEN

    got = [(clf.classify(line).label, [label]) for line, label in UNSEEN]
    res["hand_written_unseen"] = figure(got)

    _print(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1), encoding="utf-8")
    return 0


def _ablated(clf: Classifier, drop: set[int]) -> Any:
    """A classify(line) -> label function over the rule set without the rules in ``drop``:
    the lowest-index matching rule that is kept wins (KumoMTA semantics)."""

    def classify(line: str) -> str:
        for rule in clf.explain(line).matches:
            if rule.index not in drop:
                return rule.label
        return UNCAT

    return classify


def _print(res: dict[str, Any]) -> None:
    def line(name: str, f: dict[str, Any]) -> None:
        print(
            f"{name:34} n={f['n']:4}  accuracy {f['accuracy']:6.1%}  coverage {f['coverage']:6.1%}"
        )

    line("all rows", res["all_rows"])
    line("unique lines", res["unique_lines"])
    line("real reply codes only", res["real_code_only"])
    line("leave-one-source-out (ablation)", res["leave_one_source_out"])
    lo = res["leave_one_source_out"]
    print(
        f"{'':34} macro over {lo['sources']} sources: {lo['macro_accuracy']:.1%} "
        f"(with all rules {lo['macro_accuracy_with_all_rules']:.1%})"
    )
    lp = res["leave_one_source_out_provider_rules"]
    line("  same, provider rules only", lp)
    print(f"{'':34} macro: {lp['macro_accuracy']:.1%}")
    line("rows not quoted in rules / tests", res["not_quoted_in_project"])
    line("hand-written unseen lines", res["hand_written_unseen"])
    print(
        "\nper source: n, accuracy with all rules -> without the rules citing it (removed)"
        " | without its provider-file rules"
    )
    for src, v in sorted(res["per_source"].items(), key=lambda kv: -kv[1]["with_all_rules"]["n"]):
        w, wo = v["with_all_rules"], v["without_its_rules"]
        print(
            f"  {src:16} {w['n']:3}  {w['accuracy']:6.1%} -> {wo['accuracy']:6.1%}"
            f"  ({v['rules_removed']:3} rules) | {v['without_its_provider_rules']['accuracy']:6.1%}"
            f"  ({v['provider_rules_removed']} rules)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
