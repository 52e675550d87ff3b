"""Bounce categories: the shipped table covers every label; classes, overrides and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.analytics import shipped_categories_file
from streamer.analytics.categories import CATEGORIES, CategoryTable
from streamer.analytics.tables import TableError
from streamer.feedback import FEEDBACK_LABELS
from streamer.rules import PREDEFINED_LABELS


@pytest.fixture(scope="module")
def table() -> CategoryTable:
    return CategoryTable.shipped()


def test_shipped_table_covers_every_label_with_an_action(table: CategoryTable) -> None:
    for label in (*PREDEFINED_LABELS, *FEEDBACK_LABELS):
        assert label in table, label
        assert table.action(label).strip(), f"{label} has no action"
        assert table.category(label, None) in CATEGORIES


@pytest.mark.parametrize(
    ("label", "code", "expected"),
    [
        ("InvalidRecipient", 550, "hard"),
        ("InvalidRecipient", 450, "soft"),  # a 4xx unknown user is temporary (directory lag)
        ("InvalidRecipient", None, "hard"),
        ("BadDomain", 421, "soft"),
        ("QuotaIssues", 552, "soft"),
        ("TooManyRecipients", 550, "soft"),
        ("SpamBlock", 421, "block"),  # reputation deferral: never suppress the recipient
        ("SpamBlock", 554, "block"),
        ("AuthenticationFailed", 550, "block"),
        ("ProtocolErrors", 500, "admin"),
        ("Uncategorized", 550, "undetermined"),
        ("Uncategorized", 451, "undetermined"),
        ("FeedbackAbuse", 250, "complaint"),
    ],
)
def test_shipped_categories(
    table: CategoryTable, label: str, code: int | None, expected: str
) -> None:
    assert table.category(label, code) == expected


def test_unknown_labels_are_never_hard(table: CategoryTable) -> None:
    assert table.category("SiteSpecificThing", 550) == "undetermined"
    assert table.category("SiteSpecificThing", 451) == "soft"
    assert table.category("SiteSpecificThing", None) == "undetermined"
    assert "categories file" in table.action("SiteSpecificThing")


def test_later_files_override_per_label(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text(
        '[labels.QuotaIssues]\ncategory = "soft"\non_5xx = "hard"\n'
        '[labels.MyLabel]\ncategory = "block"\naction = "call them"\n'
        '[default]\ncategory = "soft"\n'
    )
    t = CategoryTable.load([shipped_categories_file(), local])
    assert t.category("QuotaIssues", 552) == "hard"
    assert t.category("QuotaIssues", 452) == "soft"
    assert t.action("QuotaIssues").startswith("retry")  # inherited from the shipped entry
    assert t.category("MyLabel", 550) == "block"
    assert t.action("MyLabel") == "call them"
    assert t.category("Unknown", 550) == "soft"
    assert t.category("InvalidRecipient", 550) == "hard"  # untouched labels keep their entry


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[labels.X]\ncategory = "fatal"\n', "labels.X.category: 'fatal' is not a category"),
        ('[labels.X]\naction = "a"\n', "labels.X.category: missing"),
        ('[labels.X]\ncategory = "hard"\non_4xx = "later"\n', "labels.X.on_4xx"),
        ('[labels.X]\ncategory = "hard"\nwhen = 1\n', "labels.X.when: unknown key"),
        ('[labels.X]\ncategory = "hard"\naction = 3\n', "labels.X.action: must be a string"),
        ('[label.X]\ncategory = "hard"\n', "label: unknown table"),
        ("[labels\n", "invalid TOML"),
    ],
)
def test_bad_entries_name_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(TableError) as exc:
        CategoryTable.load([bad])
    assert str(bad) in str(exc.value)
    assert needle in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="file not found"):
        CategoryTable.load([tmp_path / "nope.toml"])


def test_the_action_follows_the_category_the_reply_class_gives() -> None:
    table = CategoryTable.shipped()
    assert table.category("InvalidRecipient", 450) == "soft"
    assert table.action("InvalidRecipient", 550) == table.action("InvalidRecipient")
    assert table.action("InvalidRecipient", 450).startswith("retry later")
