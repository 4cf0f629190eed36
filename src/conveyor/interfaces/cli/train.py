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
from conveyor.interfaces.cli.app import EXIT_FAILED_UNITS, err, handled, out
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
    except pd.errors.EmptyDataError:
        raise InputError(
            f"--input {path!r} is empty; give a table with a header and rows"
        ) from None
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
) -> None:
    """Search a model's parameters, each trial a unit of work: a second run reruns no trial,
    more --trials run only the new ones, and a killed search continues where it stopped."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.ml.training import train as run_training

    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1 trial")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: give 0 (inline) or more workers")
    if input is None:
        raise UsageError("--input is required: the training table (a CSV or Parquet file)")
    pipe, path = load_pipeline(pipeline)
    table = read_table(input)
    if len(table) == 0:
        raise InputError(f"--input {input!r} has no rows (only a header); give it the table's rows")
    started = training_options(pipeline, path, input, model, trials, seed, artifacts, workers)
    result = run_training(pipe, model, table, store=store, artifacts=artifacts,
                          workers=workers, trials=trials, seed=seed,
                          run_options=started)  # fmt: skip
    if as_json:
        print(json.dumps(_as_dict(result), indent=2, default=str))
    else:
        _show(result)
    if result.failed:
        raise typer.Exit(EXIT_FAILED_UNITS)


def _as_dict(result: TrainingResult) -> dict[str, Any]:
    return {
        "model": result.model, "run_id": result.run_id, "data_version": result.data_version,
        "computed": result.computed, "failed": result.failed, "artifact": result.artifact,
        "lineage_artifact": result.lineage_artifact,
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
    if result.failed:
        now = any(t.value is None and t.computed for t in result.trials)
        where = f"run {result.run_id}" if now else "an earlier run ('conveyor runs')"
        err.print(f"[yellow]{result.failed} failed trial(s)[/], dead-lettered in {where}: "
                  f"'conveyor errors RUN' and 'conveyor dlq list RUN' show why")  # fmt: skip
    if result.best is None:
        out.print("[red]every trial failed[/]: see `conveyor errors` for why")
        return
    best = ", ".join(f"{k}={_short(v)}" for k, v in result.best.params.items())
    out.print(f"best params: {escape(best)}  (trial {result.best.number}, "
              f"{result.metric} {result.best.value:.4f})")  # fmt: skip
    out.print(f"model artifact: {result.artifact}")
    out.print(f"lineage artifact: {result.lineage_artifact}")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- conveyor resume of a training run ------------------------------------------------------------


def training_options(
    target: str, path: Path, input: str, model: str | None, trials: int | None, seed: int,
    artifacts: str | None, workers: int | None,
) -> dict[str, Any]:  # fmt: skip
    """How ``conveyor train`` was called, recorded with the study's run (absolute paths) so
    that ``conveyor resume`` can continue it."""
    from conveyor.ml.artifacts import ArtifactStore

    attr = target.partition(":")[2] if target.count(":") == 1 else ""
    return {"training": {
        "pipeline": f"{path.resolve()}{':' + attr if attr else ''}",
        "input": str(Path(input).resolve()), "model": model, "trials": trials, "seed": seed,
        "artifacts": ArtifactStore(artifacts).location, "workers": workers,
    }}  # fmt: skip


def resume_training(store: str | None, run_id: str | None, workers: int | None) -> bool:
    """Continue the training run ``run_id`` (default: the latest run) as the ``conveyor train``
    command that started it would, if it is one; False when it is not a training run."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    try:
        started = ledger.get_run(run_id).options.get("training")
    finally:
        ledger.close()
    if not isinstance(started, dict):
        return False
    train(started["pipeline"], input=started["input"], trials=started["trials"],
          workers=started["workers"] if workers is None else workers, seed=started["seed"],
          model=started["model"], store=store, artifacts=started["artifacts"])  # fmt: skip
    return True
