"""One repetition of one tool of ``bench/ml.py``'s search section, in a fresh process::

    python bench/_ml_child.py TOOL --seed S --trials N --workers W --folder DIR --out OUT.json

TOOL is ``conveyor`` (``conveyor.ml.training.train`` on a fresh SQLite ledger and artifact
folder in DIR, then the same call again: the cached rerun), ``optuna``
(``study.optimize(n_jobs=W)``, ``TPESampler(seed, constant_liar=True)``) or ``ray`` (Ray Tune,
``OptunaSearch`` with the same sampler, ``max_concurrent_trials=W``, ``ray.init(num_cpus=W)``).
Every tool gets the same table, the same train/valid split (Conveyor's hash split, 80/20), the
same objective (``_ml_objective.py``) and the same search space. Imports and one warm-up fit
happen before anything is timed; ``ray.init`` is timed apart from the search.

Writes OUT.json: the search wall, startup seconds (``ray.init``; 0 for the others), the summed
seconds the trials took inside the tool, the best value, failed trials, and for Conveyor the
rerun's wall and how many trials it computed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import _ml_objective as objective
import pandas as pd

from conveyor.ml.splits import split
from conveyor.ml.training import TRAINING_SHARES


def run_conveyor(
    seed: int, trials: int, workers: int, folder: Path, table: pd.DataFrame
) -> dict[str, Any]:
    """``train()`` on a fresh ledger, then the same call again on it."""
    from _ml_pipeline import pipe

    from conveyor.ml.training import train

    store, art = folder / "ledger.db", folder / "artifacts"

    def once() -> Any:
        return train(pipe, None, table, store=store, artifacts=art, workers=workers,
                     trials=trials, seed=seed)  # fmt: skip

    started = time.perf_counter()
    first = once()
    wall = time.perf_counter() - started
    started = time.perf_counter()
    again = once()
    rerun = time.perf_counter() - started
    if first.best is None or again.best is None:
        raise RuntimeError("every Conveyor trial failed")
    return {
        "wall": wall,
        "startup": 0.0,
        "busy": sum(t.seconds for t in first.trials),
        "trials": len(first.trials),
        "computed": first.computed,
        "failed": first.failed,
        "best": first.best.value,
        "rerun_wall": rerun,
        "rerun_computed": again.computed,
        "rerun_best": again.best.value,
    }


def run_optuna(seed: int, trials: int, workers: int, train: Any, valid: Any) -> dict[str, Any]:
    """``study.optimize(objective, n_trials, n_jobs=workers)`` with a seeded TPE."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)

    def trial_fn(trial: Any) -> float:
        value, seconds = objective.evaluate(objective.suggest(trial), train, valid)
        trial.set_user_attr("seconds", seconds)
        return value

    started = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(trial_fn, n_trials=trials, n_jobs=workers)
    wall = time.perf_counter() - started
    done = [t for t in study.trials if t.value is not None]
    return {
        "wall": wall,
        "startup": 0.0,
        "busy": sum(t.user_attrs.get("seconds", 0.0) for t in done),
        "trials": len(study.trials),
        "failed": len(study.trials) - len(done),
        "best": study.best_value,
    }


def ray_trial(config: dict[str, Any], train: Any = None, valid: Any = None) -> None:
    """One Ray Tune trial: the shared objective, reported once."""
    from ray import tune

    value, seconds = objective.evaluate(dict(config), train, valid)
    tune.report({"accuracy": value, "seconds": seconds, "pid": os.getpid()})


def run_ray(
    seed: int, trials: int, workers: int, folder: Path, train: Any, valid: Any
) -> dict[str, Any]:
    """Ray Tune with OptunaSearch (seeded TPE), ``max_concurrent_trials=workers``."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    startup = time.perf_counter() - started
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
            search = OptunaSearch(space=objective.optuna_space(), metric="accuracy", mode="max",
                                  sampler=sampler)  # fmt: skip
        tuner = tune.Tuner(
            tune.with_parameters(ray_trial, train=train, valid=valid),
            tune_config=tune.TuneConfig(
                search_alg=search,
                num_samples=trials,
                max_concurrent_trials=workers,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(folder / "ray"), name="bench", verbose=0),
        )
        started = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - started
    finally:
        ray.shutdown()
    values = [r.metrics.get("accuracy") for r in grid if r.metrics]
    done = [v for v in values if v is not None]
    return {
        "wall": wall,
        "startup": startup,
        "busy": sum(float(r.metrics.get("seconds", 0.0)) for r in grid if r.metrics),
        "trials": len(grid),
        "failed": len(grid) - len(done),
        "best": max(done),
        "processes": len({r.metrics.get("pid") for r in grid if r.metrics}),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one tool once and write its numbers."""
    parser = argparse.ArgumentParser(description="one repetition of bench/ml.py's search")
    parser.add_argument("tool", choices=["conveyor", "optuna", "ray"])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    table = objective.table()
    parts = split(table, TRAINING_SHARES, None)
    train, valid = parts["train"], parts["valid"]
    warm, _ = objective.evaluate({"alpha": 1e-4, "eta0": 1e-2, "learning_rate": "optimal"},
                                 train, valid)  # fmt: skip
    import optuna  # noqa: F401  (imported before timing, for every tool)

    import conveyor.scheduling.stream  # noqa: F401

    if args.tool == "conveyor":
        found = run_conveyor(args.seed, args.trials, args.workers, args.folder, table)
    elif args.tool == "optuna":
        found = run_optuna(args.seed, args.trials, args.workers, train, valid)
    else:
        found = run_ray(args.seed, args.trials, args.workers, args.folder, train, valid)
    found.update(tool=args.tool, seed=args.seed, warmup_value=warm, pid=os.getpid())
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
