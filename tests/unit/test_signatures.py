"""Error signatures group failures that differ only in their details."""

from __future__ import annotations

from conveyor.core.signatures import normalise, signature


def test_numbers_ids_paths_and_quoted_values_are_masked() -> None:
    assert normalise("unlucky 13") == "unlucky <n>"
    assert normalise("cannot read /data/in/a.txt: denied") == "cannot read <path>: denied"
    assert normalise("KeyError: 'customer_42'") == "KeyError: <str>"
    assert normalise("order 7f3a9b2c1d not found") == "order <id> not found"
    assert normalise("first line 1\nsecond line") == "first line <n>"


def test_the_same_problem_on_different_items_has_one_signature() -> None:
    a = signature("parse", "ValueError", "bad row 12 in /x/a.csv")
    b = signature("parse", "ValueError", "bad row 907 in /y/b.csv")
    assert a == b and len(a) == 10
    assert a != signature("other", "ValueError", "bad row 12 in /x/a.csv")
    assert a != signature("parse", "TypeError", "bad row 12 in /x/a.csv")
