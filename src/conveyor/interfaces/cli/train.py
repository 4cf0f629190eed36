"""``conveyor train``: a hyperparameter search whose trials are units of work, cached and
resumable, then a table of the top trials and the best parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.errors import InputError, UsageError
from conveyor.interfaces.cli import model_sets
from conveyor.interfaces.cli.app import handled, out, split_list
from conveyor.interfaces.cli.options import JsonOpt, PipelineArg, StoreOpt, WorkersOpt

if TYPE_CHECKING:
    from conveyor.ml.training import TrainingResult, Trial

InputOpt = Annotated[
    str | None,
    typer.Option("--input", "-i", envvar="CONVEYOR_INPUT",
                 help="The training table: a CSV or Parquet file."),
]  # fmt: skip
TrialsOpt = Annotated[
    int | None,
    typer.Option("--trials", envvar="CONVEYOR_TRIALS",
                 help="How many trials in all [default: the model's trials=]."),
]  # fmt: skip
SeedOpt = Annotated[int, typer.Option("--seed", envvar="CONVEYOR_SEED", help="Sampler seed.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", envvar="CONVEYOR_MODEL", help="Which @pipe.model, if several."),
]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option("--artifacts", envvar="CONVEYOR_ARTIFACTS",
                 help="Artifact store: a folder or fsspec URL [default: .conveyor/artifacts]."),
]  # fmt: skip


def read_table(path: str) -> Any:
    """A CSV or Parquet file as a pandas DataFrame."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--input {path!r}: no such file")
    try:
        if file.suffix == ".parquet":
            return pd.read_parquet(file)
        if file.suffix in (".csv", ".tsv"):
            return pd.read_csv(file, sep="\t" if file.suffix == ".tsv" else ",")
    except Exception as exc:
        raise InputError(f"--input {path!r} could not be read: {exc}") from exc
    raise UsageError(f"--input {path!r}: give a .csv, .tsv or .parquet file")


@handled
def train(
    pipeline: PipelineArg,
    input: InputOpt = None,
    trials: TrialsOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    store: StoreOpt = None,
    artifacts: ArtifactsOpt = None,
    as_json: JsonOpt = False,
    group_by: model_sets.GroupByOpt = None,
    buckets: model_sets.BucketsOpt = None,
    group_trials: model_sets.GroupTrialsOpt = 1,
) -> None:
    """Search a model's parameters, each trial a unit of work: a second run reruns no trial,
    more --trials run only the new ones, and a killed search continues where it stopped.
    With --group-by: one model per group of the table, a model set."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.ml.training import train as run_training

    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1 trial")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: give 0 (inline) or more workers")
    if input is None:
        raise UsageError("--input is required: the training table (a CSV or Parquet file)")
    if group_by or buckets is not None or group_trials != 1:  # per-group models: a model set
        if not group_by:
            raise UsageError("--buckets and --group-trials need --group-by COLUMNS")
        if trials is not None:
            raise UsageError("--trials sizes one search; with --group-by give --group-trials N")
        return model_sets.train_groups(
            pipeline, input, split_list(group_by), buckets=buckets, trials=group_trials,
            workers=workers, seed=seed, model=model, store=store, artifacts=artifacts,
            as_json=as_json,
        )  # fmt: skip
    pipe, _ = load_pipeline(pipeline)
    table = read_table(input)
    result = run_training(pipe, model, table, store=store, artifacts=artifacts,
                          workers=workers, trials=trials, seed=seed)  # fmt: skip
    if as_json:
        print(json.dumps(_as_dict(result), indent=2, default=str))
        return
    _show(result)


def _as_dict(result: TrainingResult) -> dict[str, Any]:
    return {
        "model": result.model, "run_id": result.run_id, "data_version": result.data_version,
        "computed": result.computed, "failed": result.failed, "artifact": result.artifact,
        "best": None if result.best is None else _trial(result.best),
        "trials": [_trial(t) for t in result.trials], "lineage": result.lineage,
    }  # fmt: skip


def _trial(trial: Trial) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params), "value": trial.value,
            "metrics": dict(trial.metrics), "error": trial.error}  # fmt: skip


def _show(result: TrainingResult) -> None:
    out.print(
        f"model [bold]{escape(result.model)}[/]: {len(result.trials)} trials "
        f"({result.computed} run now, {len(result.trials) - result.computed} from the ledger, "
        f"{result.failed} failed), run {result.run_id}"
    )
    top = result.top(5)
    if top:
        table = Table(box=box.SIMPLE_HEAD, title="top trials")
        metrics = list(top[0].metrics)
        for column in ("trial", *metrics, "params"):
            table.add_column(column, justify="right" if column != "params" else "left")
        for trial in top:
            params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
            table.add_row(str(trial.number), *(f"{trial.metrics[m]:.4f}" for m in metrics),
                          escape(params))  # fmt: skip
        out.print(table)
    if result.best is None:
        out.print("[red]every trial failed[/]: see `conveyor errors` for why")
        return
    best = ", ".join(f"{k}={_short(v)}" for k, v in result.best.params.items())
    out.print(f"best params: {escape(best)}  (trial {result.best.number}, "
              f"{result.metric} {result.best.value:.4f})")  # fmt: skip
    out.print(f"model artifact: {result.artifact}")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
