"""One backend of ``bench/ml_groups.py`` in a process of its own: fit the model of
``_groups_pipeline`` once per group of the table and report the time on one line.

    python bench/_groups_child.py BACKEND TABLE.parquet FOLDER WORKERS [BUCKETS]

Every backend does the same work per group, :func:`conveyor.ml.groups.fit_group` (split the
group into train and valid, fit, score, save the model in an artifact store under FOLDER), and
the time runs from reading the table to the last group's result. Starting Ray or joblib's
worker processes, and one warm-up batch, are not timed (reported as ``setup_seconds``);
Conveyor's whole ``train_groups`` call is, forking its workers and writing its ledger and
model set included. Prints ``@@{"seconds": ..., "groups": ..., "setup_seconds": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _groups_pipeline as work
import pandas as pd

from conveyor.ml.groups import GroupSettings, fit_group, train_groups
from conveyor.sources.records import group_id

SPEC = work.pipe.models["demand"]
METRICS = list(work.pipe.metrics.values())
WARMUP_GROUPS = 20


def settings(folder: Path) -> GroupSettings:
    """What a group's fit needs, as Conveyor's unit gets it."""
    return GroupSettings(model="demand", group_by=work.GROUP_BY, input="",
                         artifacts=str(folder / "artifacts"), data_version="")  # fmt: skip


def one(group: str, frame: pd.DataFrame, where: GroupSettings) -> dict[str, Any]:
    """Fit one group as a Conveyor unit does."""
    return fit_group(SPEC, METRICS, where, "bench", group, frame)


def read_groups(table: Path) -> Iterator[tuple[str, pd.DataFrame]]:
    """The groups of the table, read from the file, with Conveyor's group ids."""
    frame = pd.read_parquet(table)
    for values, group in frame.groupby(list(work.GROUP_BY), sort=True):
        yield group_id(work.GROUP_BY, values), group.reset_index(drop=True)


def main(backend: str, table: Path, folder: Path, workers: int, buckets: int | None) -> None:
    """Measure ``backend`` once and print the result line."""
    where = settings(folder)
    setup = 0.0
    if backend == "sequential":
        started = time.perf_counter()
        results = [one(g, f, where) for g, f in read_groups(table)]
    elif backend == "joblib":
        from joblib import Parallel, delayed

        t0 = time.perf_counter()
        with Parallel(n_jobs=workers) as parallel:
            warm = list(read_groups(table))[:WARMUP_GROUPS]
            parallel(delayed(one)(g, f, settings(folder / "warm")) for g, f in warm)
            setup = time.perf_counter() - t0
            started = time.perf_counter()
            results = parallel(delayed(one)(g, f, where) for g, f in read_groups(table))
    elif backend == "ray":
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")  # fmt: skip
        remote = ray.remote(one)
        warm = list(read_groups(table))[:WARMUP_GROUPS]
        ray.get([remote.remote(g, f, settings(folder / "warm")) for g, f in warm])
        setup = time.perf_counter() - t0
        started = time.perf_counter()
        results = ray.get([remote.remote(g, f, where) for g, f in read_groups(table)])
        seconds = time.perf_counter() - started
        ray.shutdown()
    elif backend == "conveyor":
        started = time.perf_counter()
        done = train_groups(work.pipe, table, work.GROUP_BY, buckets=buckets, workers=workers,
                            store=folder / "ledger.db", artifacts=folder / "artifacts")  # fmt: skip
        if done.failed or done.model_set is None:
            raise SystemExit(f"conveyor: {len(done.failed)} groups failed: {done.failed}")
        results = list(done.groups.values())
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    if backend != "ray":
        seconds = time.perf_counter() - started
    print("@@" + json.dumps({"seconds": seconds, "groups": len(results), "setup_seconds": setup}))
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = sys.argv[1:]
    main(args[0], Path(args[1]), Path(args[2]), int(args[3]),
         int(args[4]) if len(args) > 4 and args[4] != "0" else None)  # fmt: skip
