"""``conveyor train --group-by``: one model per group of a table, a *model set*; and the
redrive of such a training (``conveyor redrive`` comes here when the run is one)."""

from __future__ import annotations

import json
import statistics
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from conveyor.core.units import RunState
from conveyor.errors import UsageError
from conveyor.interfaces.cli.app import EXIT_FAILED_UNITS, err, out, plural
from conveyor.observability.report import seconds, step_table

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.core.units import RunInfo
    from conveyor.definition.pipeline import Pipeline
    from conveyor.ml.groups import GroupTraining
    from conveyor.ml.release import Release
    from conveyor.store import Store

GroupByOpt = Annotated[
    list[str] | None,
    typer.Option("--group-by", envvar="CONVEYOR_GROUP_BY",
                 help="Train one model per group of these columns (a,b): a model set."),
]  # fmt: skip
BucketsOpt = Annotated[
    int | None,
    typer.Option("--buckets", envvar="CONVEYOR_BUCKETS",
                 help="With --group-by: pack the groups into this many units of work."),
]  # fmt: skip
GroupTrialsOpt = Annotated[
    int,
    typer.Option("--group-trials", envvar="CONVEYOR_GROUP_TRIALS",
                 help="With --group-by: trials of each group's search (1: fixed parameters, "
                      "the middle of each search range)."),
]  # fmt: skip
#: How many of the worst groups the summary names.
WORST = 5


def train_groups(
    pipeline: str,
    input: str,
    group_by: list[str],
    *,
    buckets: int | None,
    trials: int,
    workers: int | None,
    seed: int,
    model: str | None,
    store: str | None,
    artifacts: str | None,
    as_json: bool,
    promote: bool = False,
) -> None:
    """Train one model per group, register the model set, print it (exit 1 if some groups
    failed); with ``promote`` a complete set becomes the champion."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.ml.groups import train_groups as run_groups
    from conveyor.observability.progress import RichProgress

    if buckets is not None and buckets < 1:
        raise UsageError(f"--buckets {buckets}: must be a whole number >= 1")
    if trials < 1:
        raise UsageError(f"--group-trials {trials}: give at least 1 trial per group")
    pipe, path = load_pipeline(pipeline)
    result = run_groups(
        pipe, input, group_by, model=model, buckets=buckets, trials=trials, seed=seed,
        store=store, artifacts=artifacts, workers=workers, pipeline_file=str(path),
        hooks=[] if as_json else [RichProgress(err)],
    )  # fmt: skip
    _finish(result, as_json, store, promote)


def is_group_training(run: RunInfo) -> bool:
    """Whether ``run`` is a per-group training, whose redrive is :func:`redrive`'s."""
    from conveyor.ml.groups import is_group_training as check

    return check(run)


def redrive(
    ledger: Store, run: RunInfo, pipe: Pipeline, *, step: str | None, error: str | None,
    workers: int | None, progress: bool,
) -> None:  # fmt: skip
    """Refit the failed groups of a per-group training and write its model set again."""
    from conveyor.ml.groups import redrive_groups
    from conveyor.observability.progress import RichProgress

    if step is not None or error is not None:
        raise UsageError(
            f"run {run.id} is a per-group training: redrive refits all its failed groups; "
            f"drop --step/--error"
        )
    result = redrive_groups(pipe, run.id, store=ledger, workers=workers,
                            hooks=[RichProgress(err)] if progress else [])  # fmt: skip
    _finish(result, False, ledger)


def resume(
    ledger: Store, run: RunInfo, pipe: Pipeline, path: Path, *, workers: int | None,
    progress: bool,
) -> None:  # fmt: skip
    """Continue an interrupted per-group training: the same training again adopts it."""
    from conveyor.ml.groups import GroupSettings
    from conveyor.ml.groups import train_groups as run_groups
    from conveyor.observability.progress import RichProgress
    from conveyor.scheduling.coordinator import check_resumable

    check_resumable(run, run.pipeline, run.signature or "")  # finished or still running: no
    settings = GroupSettings.from_run(run)
    result = run_groups(
        pipe, settings.input, settings.group_by, model=settings.model, buckets=settings.buckets,
        trials=settings.trials, seed=settings.seed, shares=settings.shares, store=ledger,
        artifacts=settings.artifacts, workers=workers, pipeline_file=str(path),
        hooks=[RichProgress(err)] if progress else [],
    )  # fmt: skip
    if result.run_id != run.id:
        err.print(f"[yellow]run {run.id} could not be continued (its table or code changed): "
                  f"trained as run {result.run_id}, finished groups cached[/]")  # fmt: skip
    _finish(result, False, ledger)


def _finish(
    result: GroupTraining, as_json: bool, store: str | Store | None, promote: bool = False
) -> None:
    done = _register(result, store, promote)
    if as_json:
        print(json.dumps({**as_dict(result), "registered": None if done is None else {
            "name": done.version.name, "version": done.version.version, "new": done.created,
            "champion": done.promoted is not None}}, indent=2, default=str))  # fmt: skip
    else:
        show(result)
        if done is not None:
            how = "registered" if done.created else "already registered"
            out.print(f"[bold]{escape(done.version.name)} {done.version.version}[/] {how} "
                      f"(a model set of {plural(done.version.members, 'group')})")  # fmt: skip
            if done.promoted is not None:
                out.print(f"alias [bold]champion[/]: {done.promoted.from_version or 'nobody'} "
                          f"-> {done.promoted.to_version}")  # fmt: skip
    if result.state is not RunState.COMPLETED:
        raise typer.Exit(EXIT_FAILED_UNITS)


def _register(result: GroupTraining, store: str | Store | None, promote: bool) -> Release | None:
    from conveyor.ml.registry import Registry
    from conveyor.ml.release import release_model_set

    if result.model_set is None or result.index is None:
        return None
    with Registry(store, result.artifacts) as registry:
        return release_model_set(registry, result.model, result.model_set, result.index,
                                 run_id=result.run_id, promote=promote)  # fmt: skip


def as_dict(result: GroupTraining) -> dict[str, Any]:
    """The training as JSON: the model set, every group's metrics, the failed groups."""
    return {
        "model": result.model, "run_id": result.run_id, "state": result.state.value,
        "model_set": result.model_set, "artifacts": result.artifacts,
        "group_by": list(result.group_by), "data_version": result.data_version,
        "trained": len(result.groups), "failed": result.failed,
        "computed": result.computed, "cached": result.cached,
        "groups": {g.group: {"metrics": dict(g.metrics), "rows": g.rows, "model": g.model,
                             "params": dict(g.params)} for g in result.groups.values()},
    }  # fmt: skip


def show(result: GroupTraining) -> None:
    """The summary: groups trained and failed, the metric's distribution and worst groups,
    and the model set's version."""
    style = "green" if result.state is RunState.COMPLETED else "yellow"
    out.print(
        f"run [bold]{result.run_id}[/] [{style}]{result.state.value}[/] in "
        f"{seconds(result.seconds)}: model [bold]{escape(result.model)}[/] per "
        f"{escape(','.join(result.group_by))}: {plural(len(result.groups), 'group')} trained, "
        f"{len(result.failed)} failed ({result.computed} units fitted in this run, "
        f"{result.cached} from the cache)"
    )
    out.print(step_table(result.stats))
    ranked = result.ranked()
    if ranked:
        values = [g.metrics[result.metric] for g in ranked]
        quantiles = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
        best, worst = (max, min) if result.direction == "maximize" else (min, max)
        out.print(
            f"{escape(result.metric)} on valid ({result.direction}): median "
            f"{statistics.median(values):.4g}, best {best(values):.4g}, p10-p90 "
            f"{quantiles[0]:.4g}-{quantiles[-1]:.4g}, worst {worst(values):.4g}"
        )
        shown = ", ".join(
            f"{escape(g.group)} {g.metrics[result.metric]:.4g}" for g in ranked[::-1][:WORST]
        )
        out.print(f"worst groups: {shown}")
    if result.failed:
        err.print(f"[yellow]{plural(len(result.failed), 'group')} failed[/] (dead units):")
        for gid, message in list(result.failed.items())[:WORST]:
            err.print(f"  {escape(gid)}: {escape(message[:200])}")
        if len(result.failed) > WORST:
            err.print(
                f"  ... and {len(result.failed) - WORST} more: conveyor dlq list {result.run_id}"
            )
        err.print(f"after a fix, finish them with: conveyor redrive {result.run_id}")
    if result.model_set is None:
        out.print("[red]no group was trained[/]: no model set was written")
        return
    whole = "every group" if not result.failed else f"missing {len(result.failed)}"
    out.print(f"model set: [bold]{result.model_set}[/] ({plural(len(result.groups), 'group')}, "
              f"{whole}) in {escape(result.artifacts)}")  # fmt: skip
    out.print("load it: conveyor.ml.groups.load_model_set(ARTIFACTS, VERSION).model(GROUP_ID)")
