"""Worker processes limit their native thread pools (OpenMP, BLAS) to their share of the
cores, as Ray does, unless the user set ``OMP_NUM_THREADS``: N processes of N threads each
would fight over the cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.scheduling.stream import Stream

pipe = cv.Pipeline("threads")


@pipe.step
def threads(item: cv.Item) -> dict[str, str | None]:
    from threadpoolctl import threadpool_info

    pools = {p["user_api"]: str(p["num_threads"]) for p in threadpool_info()}
    return {"env": os.environ.get("OMP_NUM_THREADS"), "blas": pools.get("blas")}


def _seen(store: Path) -> dict[str, str | None]:
    with Stream(pipe, store=store, workers=2) as stream:
        result: dict[str, str | None] = stream.result(stream.submit({"n": 1}))["threads"]
    return result


@pytest.mark.slow
def test_each_worker_gets_its_share_of_the_cores(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    share = str(max(1, (os.cpu_count() or 1) // 2))
    seen = _seen(store_path)
    assert seen["env"] == share
    assert seen["blas"] in (None, share)  # numpy's BLAS, loaded before the fork, is limited


@pytest.mark.slow
def test_a_thread_count_the_user_chose_is_kept(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("threadpoolctl")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _seen(store_path)["env"] == "3"
