"""Sizes as users write them."""

from __future__ import annotations

import pytest

from conveyor.core.sizes import parse_size


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("2GB", 2_000_000_000),
        ("512MiB", 512 * 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("100kb", 100_000),
        ("1 TiB", 1024**4),
        ("64b", 64),
        ("4096", 4096),
        (0, 0),
        (1_000_000, 1_000_000),
    ],
)
def test_accepted_forms_give_bytes(value: str | int, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 gigs", "'2 gigs' is not a size; write e.g. '2GB', '512MiB'"),
        ("GB", "'GB' is not a size"),
        ("-1GB", "'-1GB' is not a size"),
        ("", "'' is not a size"),
        (-5, "-5 is negative"),
        (1.5, "1.5 is not a size"),
        (True, "True is not a size"),
        (None, "None is not a size"),
    ],
)
def test_anything_else_says_which_forms_are_accepted(value: object, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_size(value)  # type: ignore[arg-type]
    assert str(excinfo.value).startswith(message)
