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
from conveyor.interfaces.cli.app import (
    EXIT_FAILED_UNITS,
    EXIT_GATE_FAILED,
    err,
    handled,
    out,
    split_list,
)
from conveyor.interfaces.cli.options import (
    ArtifactsOpt,
    ExecutorOpt,
    JsonOpt,
    PipelineArg,
    ProgressOpt,
    RayAddressOpt,
    StoreOpt,
    WorkersOpt,
)
from conveyor.interfaces.cli.trial_progress import TrialProgress

if TYPE_CHECKING:
    from conveyor.ml.release import Release
    from conveyor.ml.training import TrainingResult, Trial

InputOpt = Annotated[
    str | None,
    typer.Option("--input", "-i", envvar="CONVEYOR_INPUT",
                 help="The training table: a CSV or Parquet file [default: the model's "
                      "@pipe.dataset]."),
]  # fmt: skip
DatasetOpt = Annotated[
    str | None,
    typer.Option("--dataset", envvar="CONVEYOR_DATASET",
                 help="The @pipe.dataset to train on, built and checked first [default: the "
                      "model's dataset=, or the pipeline's only dataset]."),
]  # fmt: skip
SplitOpt = Annotated[
    str | None,
    typer.Option("--split", envvar="CONVEYOR_SPLIT",
                 help="Shares of a hash split, e.g. train=0.7,valid=0.15,golden=0.15 "
                      "[default: that]."),
]  # fmt: skip
IdFieldOpt = Annotated[
    str | None,
    typer.Option("--id-field", envvar="CONVEYOR_ID_FIELD",
                 help="The column whose hash places each row in a split [default: the whole "
                      "row]."),
]  # fmt: skip
TimeColumnOpt = Annotated[
    str | None,
    typer.Option("--time-column", envvar="CONVEYOR_TIME_COLUMN",
                 help="Split by this time or number column at --cutoffs instead of by hash."),
]  # fmt: skip
CutoffsOpt = Annotated[
    str | None,
    typer.Option("--cutoffs", envvar="CONVEYOR_CUTOFFS",
                 help="With --time-column: where each split ends, e.g. "
                      "train=1990-01-01,valid=1995-01-01 (golden takes the rest)."),
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
PromoteOpt = Annotated[
    bool,
    typer.Option("--promote/--no-promote", envvar="CONVEYOR_PROMOTE",
                 help="Make the new model the champion when it passes its gate."),
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


def parse_pairs(flag: str, text: str, *, numbers: bool) -> dict[str, Any]:
    """``a=1,b=2`` as ``{"a": 1.0, "b": 2.0}`` (values kept as text unless ``numbers``)."""
    pairs: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise UsageError(f"{flag} {text!r}: give name=value pairs, e.g. train=0.7,valid=0.3")
        if name in pairs:
            raise UsageError(f"{flag} {text!r}: {name!r} is given twice")
        if numbers:
            try:
                pairs[name] = float(value)
            except ValueError:
                raise UsageError(f"{flag} {text!r}: {value!r} is not a number") from None
        else:
            pairs[name] = value
    return pairs


def _split_options(
    split: str | None, time_column: str | None, cutoffs: str | None
) -> dict[str, Any]:
    if time_column is not None:
        if split is not None:
            raise UsageError("--split and --time-column are two ways to split; give one")
        if cutoffs is None:
            raise UsageError(
                f"--time-column {time_column!r} needs --cutoffs, e.g. train=1990-01-01,"
                f"valid=1995-01-01 (golden takes the rest)"
            )
        chosen = parse_pairs("--cutoffs", cutoffs, numbers=False)
        if chosen.get("golden") is not None:
            raise UsageError("--cutoffs: golden takes the rows after the last cut-off; drop it")
        return {"time_column": time_column, "cutoffs": chosen}
    if cutoffs is not None:
        raise UsageError("--cutoffs needs --time-column: the column the cut-offs are in")
    return {} if split is None else {"shares": parse_pairs("--split", split, numbers=True)}


@handled
def train(
    pipeline: PipelineArg,
    input: InputOpt = None,
    dataset: DatasetOpt = None,
    trials: TrialsOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    model: ModelOpt = None,
    split: SplitOpt = None,
    id_field: IdFieldOpt = None,
    time_column: TimeColumnOpt = None,
    cutoffs: CutoffsOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    store: StoreOpt = None,
    artifacts: ArtifactsOpt = None,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
    group_by: model_sets.GroupByOpt = None,
    buckets: model_sets.BucketsOpt = None,
    group_trials: model_sets.GroupTrialsOpt = 1,
    promote: PromoteOpt = False,
) -> None:
    """Search a model's parameters, each trial a unit of work: a second run reruns no trial,
    more --trials run only the new ones, and a killed search continues where it stopped.
    The best model is gated against the champion on the golden split and registered
    (exit 4 when it fails its gate); --promote makes it the champion when it passes.
    With --group-by: one model per group of the table, a model set."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.ml.training import train as run_training

    if trials is not None and trials < 1:
        raise UsageError(f"--trials {trials}: give at least 1 trial")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers {workers}: give 0 (inline) or more workers")
    if group_by or buckets is not None or group_trials != 1:  # per-group models: a model set
        if not group_by:
            raise UsageError("--buckets and --group-trials need --group-by COLUMNS")
        if trials is not None:
            raise UsageError("--trials sizes one search; with --group-by give --group-trials N")
        if input is None:
            raise UsageError("--group-by needs --input: the table whose groups get a model each")
        return model_sets.train_groups(
            pipeline, input, split_list(group_by), buckets=buckets, trials=group_trials,
            workers=workers, seed=seed, model=model, store=store, artifacts=artifacts,
            as_json=as_json, promote=promote,
        )  # fmt: skip
    if input is not None and dataset is not None:
        raise UsageError("--input and --dataset both name the data; give one")
    options = _split_options(split, time_column, cutoffs)
    pipe, path = load_pipeline(pipeline)
    table = None if input is None else read_table(input)
    if table is not None and len(table) == 0:
        raise InputError(f"--input {input!r} has no rows (only a header); give it the table's rows")
    started = training_options(pipeline, path, artifacts, {
        "input": None if input is None else str(Path(input).resolve()), "dataset": dataset,
        "model": model, "trials": trials, "seed": seed, "workers": workers, "split": split,
        "id_field": id_field, "time_column": time_column, "cutoffs": cutoffs,
        "executor": executor, "ray_address": ray_address, "promote": promote,
    })  # fmt: skip
    view = TrialProgress(enabled=progress and not as_json)
    with view:
        result = run_training(
            pipe, model, table, dataset=dataset, store=store, artifacts=artifacts,
            workers=workers, trials=trials, seed=seed, backend=executor or "local",
            ray_address=ray_address, id_column=id_field, on_progress=view.update,
            run_options=started, promote=promote, **options,
        )  # fmt: skip
    if as_json:
        print(json.dumps(_as_dict(result), indent=2, default=str))
    else:
        _show(result)
    if result.release is not None and result.release.passed is False:
        raise typer.Exit(EXIT_GATE_FAILED)
    if result.failed:
        raise typer.Exit(EXIT_FAILED_UNITS)


def _as_dict(result: TrainingResult) -> dict[str, Any]:
    return {
        "model": result.model, "run_id": result.run_id, "data_version": result.data_version,
        "computed": result.computed, "failed": result.failed, "pruned": result.pruned,
        "artifact": result.artifact, "lineage_artifact": result.lineage_artifact,
        "best": None if result.best is None else _trial(result.best),
        "trials": [_trial(t) for t in result.trials], "lineage": result.lineage,
        "registered": None if result.release is None else _released(result.release),
    }  # fmt: skip


def _released(done: Release) -> dict[str, Any]:
    moves = [m for m in (done.challenger, done.promoted) if m is not None]
    return {
        "name": done.version.name, "version": done.version.version, "new": done.created,
        "passed": done.version.passed, "gate": done.version.gate,
        "moved": [{"alias": m.alias, "from": m.from_version, "to": m.to_version} for m in moves],
        "held_back": done.held_back,
        "export": None if done.export is None else {"format": done.export.format,
                                                     **done.export.details},
    }  # fmt: skip


def _trial(trial: Trial) -> dict[str, Any]:
    return {"number": trial.number, "state": trial.state, "params": dict(trial.params),
            "value": trial.value, "metrics": dict(trial.metrics), "error": trial.error,
            "seconds": round(trial.seconds, 4)}  # fmt: skip


def _show(result: TrainingResult) -> None:
    out.print(
        f"model [bold]{escape(result.model)}[/]: {len(result.trials)} trials "
        f"({result.computed} run now, {len(result.trials) - result.computed} from the ledger, "
        f"{result.failed} failed, {result.pruned} pruned), run {result.run_id}"
    )
    data = result.lineage
    where = f"dataset {data['dataset']} " if data.get("dataset") else ""
    golden = data.get("golden")
    out.print(
        f"data: {escape(where)}version {result.data_version[:12]}, split by "
        f"{data['split']['by']}"
        + (f"; golden split pinned: {golden['version'][:12]} ({golden['rows']} rows)"
           if golden else "")
    )  # fmt: skip
    top = result.top(5)
    if top:
        table = Table(box=box.SIMPLE_HEAD, title="top trials")
        metrics = list(top[0].metrics)
        for column in ("trial", *metrics, "seconds", "params"):
            table.add_column(column, justify="right" if column != "params" else "left")
        for trial in top:
            params = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
            table.add_row(str(trial.number), *(f"{trial.metrics[m]:.4f}" for m in metrics),
                          f"{trial.seconds:.2f}", escape(params))  # fmt: skip
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
    out.print(f"model artifact:   {result.artifact}")
    out.print(f"lineage artifact: {result.lineage_artifact}")
    if result.release is not None:
        show_release(result.release)


def show_release(done: Release) -> None:
    """The registered version, its gate's table and the aliases it took."""
    from conveyor.interfaces.cli.models import gate_summary, gate_table

    record = done.version
    how = "registered" if done.created else "already registered (the same model)"
    out.print(f"[bold]{escape(record.name)} {record.version}[/] {how}")
    if record.gate is not None:
        out.print(gate_summary(record.gate))
        out.print(gate_table(record.gate))
    if record.passed is False:
        err.print(f"[red]the challenger failed its gate[/]: {escape(record.name)} "
                  f"{record.version} stays challenger; 'conveyor models promote "
                  f"{escape(record.name)} {record.version} --force' overrides")  # fmt: skip
    for move in (done.challenger, done.promoted):
        if move is not None:
            was = "nobody" if move.from_version is None else str(move.from_version)
            out.print(f"alias [bold]{escape(move.alias)}[/]: {was} -> {move.to_version}")
    if done.held_back is not None:
        err.print(f"[yellow]not promoted[/]: {escape(done.held_back)}")
    if done.export is not None:
        parity = done.export.details.get("parity")
        out.print(
            f"exported to {done.export.format}"
            + (f" (parity: largest difference {parity:.3g})" if parity is not None else "")
        )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- conveyor resume of a training run ------------------------------------------------------------


def training_options(
    target: str, path: Path, artifacts: str | None, flags: dict[str, Any]
) -> dict[str, Any]:
    """How ``conveyor train`` was called, recorded with the study's run (absolute paths) so
    that ``conveyor resume`` can continue it: the pipeline, the artifact store and ``flags``
    (the command's other options, by parameter name)."""
    from conveyor.ml.artifacts import ArtifactStore

    attr = target.partition(":")[2] if target.count(":") == 1 else ""
    return {"training": {
        "pipeline": f"{path.resolve()}{':' + attr if attr else ''}",
        "artifacts": ArtifactStore(artifacts).location, **flags,
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
    if not isinstance(started, dict) or started.get("kind") == "groups":
        return False  # not a study (a per-group training is resumed by model_sets)
    flags = {k: v for k, v in started.items() if k in _RESUMED}
    if workers is not None:
        flags["workers"] = workers
    train(store=store, **flags)
    return True


#: The options of ``conveyor train`` that ``conveyor resume`` passes on as they were given.
_RESUMED = (
    "pipeline", "artifacts", "input", "dataset", "model", "trials", "seed", "workers", "split",
    "id_field", "time_column", "cutoffs", "executor", "ray_address", "promote",
)  # fmt: skip
