"""Four steps over records: a fan-out, a join, and one poisoned value (13) whose failure skips
what depends on it. Shared by the run and executor-contract tests."""

from __future__ import annotations

import conveyor as cv

chain = cv.Pipeline("chain")


@chain.step
def parsed(item: cv.Item) -> int:
    return int(item["value"])


@chain.step
def doubled(parsed: int) -> int:
    if parsed == 13:
        raise ValueError(f"unlucky {parsed}")
    return parsed * 2


@chain.step
def described(doubled: int, parsed: int) -> str:
    return f"{parsed}->{doubled}"


@chain.step
def squared(parsed: int) -> int:
    return parsed * parsed
