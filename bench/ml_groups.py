"""Per-group models: 3,000 groups x a small scikit-learn fit, Conveyor against a loop, joblib
and raw Ray.

Usage::

    python bench/ml_groups.py [--quick] [--json OUT]

The table (``_groups_pipeline.write_table``): 3,000 (segment, location) groups of 40 to 150
weeks of sales each (~285,000 rows), each with a demand curve of its own. The work per group
is the same for every backend, :func:`conveyor.ml.groups.fit_group`: a deterministic
train/valid split, a scaled ridge regression of log units on log price, promotion and season,
its error on valid, the fitted model pickled into an artifact store. Backends, each repetition
in a fresh child process (``_groups_child.py``), in an order rotated from one repetition to
the next so that drift on a shared machine hits them alike:

* ``sequential``: a plain loop over the groups;
* ``joblib``: ``joblib.Parallel(n_jobs=2)`` (loky processes, automatic batching);
* ``ray``: raw Ray, one ``ray.remote`` task per group, ``ray.init(num_cpus=2)``;
* ``conveyor``: ``conveyor.ml.groups.train_groups(..., workers=2)``, one unit per group, a
  fresh SQLite ledger: the whole call (reading the table, its fingerprint, planning 3,000
  items, forking the workers, committing every unit, writing the model set);
* ``conveyor-buckets``: the same with ``buckets=150`` (about 20 groups per unit).

Timed: from reading the table to the last group's result. Not timed, and reported apart:
``ray.init`` and joblib's pool start, with a warm-up of 20 groups each. Every figure is the
median of the repetitions. The targets: Conveyor >= 1.8x the loop on 2 cores, and >= joblib.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import MetricRow, Results, Scratch, load_note, median, metric_main, say

BENCH_DIR = Path(__file__).resolve().parent
CHILD = BENCH_DIR / "_groups_child.py"
WORKERS = 2
BACKENDS = {
    "sequential": "sequential loop",
    "joblib": "joblib.Parallel(n_jobs=2)",
    "ray": "raw Ray (num_cpus=2)",
    "conveyor": "conveyor, a unit per group",
    "conveyor-buckets": "conveyor, buckets=150",
}
BUCKETS = 150


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    groups: int
    repeats: int
    workers: int = WORKERS
    buckets: int = BUCKETS

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        return cls(quick=quick, groups=300 if quick else 3000, repeats=1 if quick else 3)


def run_child(backend: str, table: Path, folder: Path, cfg: Config) -> dict[str, Any]:
    """One measurement of ``backend`` in a child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p
    )}  # fmt: skip
    buckets = cfg.buckets if backend == "conveyor-buckets" else 0
    name = "conveyor" if backend.startswith("conveyor") else backend
    done = subprocess.run(
        [sys.executable, str(CHILD), name, str(table), str(folder), str(cfg.workers),
         str(buckets)],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("@@")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{backend} failed (exit {done.returncode}): {' | '.join(tail)}")
    found: dict[str, Any] = json.loads(lines[-1][2:])
    if found["groups"] != cfg.groups:
        raise RuntimeError(f"{backend} fitted {found['groups']} groups, not {cfg.groups}")
    return found


def groups_section(cfg: Config, scratch: Scratch, results: Results[Config, MetricRow]) -> None:
    """Every backend on the same table, ``cfg.repeats`` times, rotated."""
    sys.path.insert(0, str(BENCH_DIR))
    import _groups_pipeline

    table = scratch.folder("table") / "sales.parquet"
    rows = _groups_pipeline.write_table(table, cfg.groups)
    say(f"[bold]per-group fits[/bold]: {cfg.groups:,} groups, {rows:,} rows, "
        f"{cfg.repeats} repetitions{load_note()}")  # fmt: skip
    names = list(BACKENDS)
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for rep in range(cfg.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for backend in order:
            folder = scratch.folder(backend)
            started = time.perf_counter()
            one = run_child(backend, table, folder, cfg)
            found[backend].append(one)
            say(f"   rep {rep + 1} {backend:<17} {one['seconds']:7.2f} s "
                f"({cfg.groups / one['seconds']:6.0f} groups/s; "
                f"setup {one['setup_seconds']:.1f} s, "
                f"child {time.perf_counter() - started:.1f} s){load_note()}")  # fmt: skip
            scratch.drop(folder)
    walls = {name: median([r["seconds"] for r in runs]) for name, runs in found.items()}
    rates = {name: cfg.groups / wall for name, wall in walls.items()}
    sequential, joblib = walls["sequential"], walls["joblib"]
    results.sections["groups"] = {
        "groups": cfg.groups, "rows": rows, "runs": found, "median_seconds": walls,
        "groups_per_second": rates, "speedup_vs_sequential": {
            name: sequential / wall for name, wall in walls.items()
        },
    }  # fmt: skip
    for name, label in BACKENDS.items():
        results.rows.append(MetricRow(
            "groups", f"{label}: groups/s", f"{rates[name]:,.0f}",
            f"median {walls[name]:.2f} s; {sequential / walls[name]:.2f}x the loop", "", None,
        ))  # fmt: skip
    best = min(("conveyor", "conveyor-buckets"), key=lambda n: walls[n])
    for name in ("conveyor", "conveyor-buckets"):
        speedup = sequential / walls[name]
        results.rows.append(MetricRow(
            "groups", f"{BACKENDS[name]} vs the loop", f"{speedup:.2f}x",
            f"{walls[name]:.2f} s vs {sequential:.2f} s", ">= 1.8x", speedup >= 1.8,
        ))  # fmt: skip
        versus = joblib / walls[name]
        results.rows.append(MetricRow(
            "groups", f"{BACKENDS[name]} vs joblib", f"{versus:.2f}x",
            f"{rates[name]:,.0f} vs {rates['joblib']:,.0f} groups/s", ">= 1.0x", versus >= 1.0,
        ))  # fmt: skip
    results.sections["groups"]["best_conveyor"] = best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module's docstring."""
    return metric_main(
        argv, doc=__doc__, name="per-group benchmark", title="Per-group models",
        sections={"groups": groups_section}, make_config=Config.make,
        scratch_prefix="conveyor-bench-groups-",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
