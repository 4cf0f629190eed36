"""Training with a hyperparameter search whose trials are units of work.

Each trial is an item of a small study pipeline run as a stream on the engine: its content is
the parameters and the data's fingerprint, and its step's version is the code versions of
``fit`` and the metrics, so the ledger caches a trial by (data, parameters, code). A trial's
item id is its number in the study, so the same call again finds every trial finished and
runs none, more trials run only the new ones, and a killed study is continued: its run is
adopted, and its finished trials are told again to a fresh sampler.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.definition.models import (
    MetricSpec,
    ModelSpec,
    check_models,
    fitted_model,
    metric_value,
)
from conveyor.definition.pipeline import Pipeline
from conveyor.definition.step import did_you_mean
from conveyor.errors import DefinitionError, StepError, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.datasets import fingerprint
from conveyor.ml.pruning import Reporter, TrialPruned, reporting
from conveyor.ml.search import FinishedTrial, Search, TrialParams
from conveyor.ml.splits import DEFAULT_SHARES, split, split_by_time
from conveyor.ml.tables import Table, column_names, num_rows

if TYPE_CHECKING:
    from conveyor.ml.release import Release
    from conveyor.scheduling.stream import Stream

#: The shares a training table is split into when none are given: the golden split is kept
#: out of the search, pinned by version for the champion/challenger gate.
TRAINING_SHARES: Mapping[str, float] = DEFAULT_SHARES
#: Bumped when what a trial computes changes, so cached trials of older code are not reused.
TRIAL_FORMAT = "2"
_PACKAGES = ("conveyor", "cloudpickle", "numpy", "optuna", "pandas", "pyarrow", "scikit-learn")


@dataclass(frozen=True)
class Trial:
    """A finished trial: its number, parameters, value (None when it failed; the last value
    reported when it was pruned), every metric, the digest of its fitted model, the values it
    reported as it went, and whether this call computed it."""

    number: int
    params: Mapping[str, Any]
    value: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    model: str | None = None
    error: str | None = None
    computed: bool = False
    seconds: float = 0.0
    pruned: bool = False
    reports: Mapping[int, float] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """``complete``, ``pruned`` or ``failed``."""
        if self.pruned:
            return "pruned"
        return "failed" if self.value is None else "complete"


@dataclass(frozen=True)
class Progress:
    """Where a search stands, told to ``on_progress`` as trials start and end."""

    total: int
    done: int
    running: int
    failed: int
    pruned: int
    best: float | None
    last: Trial | None = None


@dataclass(frozen=True)
class TrainingData:
    """What a model trains on: the splits, the whole table's version, where it came from
    (a dataset and its version, or a file), how it was split, and the pinned golden split."""

    tables: Mapping[str, Table]
    version: str
    split: Mapping[str, Any]
    dataset: str | None = None
    golden: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :func:`train`: every trial, the best, its saved model and lineage."""

    model: str
    metric: str
    run_id: str
    data_version: str
    direction: str
    trials: list[Trial]
    best: Trial | None
    artifact: str | None
    lineage: dict[str, Any]
    #: The digest of the lineage JSON in the artifact store (None when every trial failed).
    lineage_artifact: str | None = None
    #: The best model gated, registered and aliased (None when not registered).
    release: Release | None = None

    @property
    def computed(self) -> int:
        """How many trials this call ran (the rest were finished before)."""
        return sum(t.computed for t in self.trials)

    @property
    def failed(self) -> int:
        """How many trials failed."""
        return sum(t.state == "failed" for t in self.trials)

    @property
    def pruned(self) -> int:
        """How many trials the pruner stopped early."""
        return sum(t.pruned for t in self.trials)

    def top(self, n: int = 5) -> list[Trial]:
        """The ``n`` best complete trials, best first."""
        done = [t for t in self.trials if t.state == "complete"]
        done.sort(key=lambda t: t.value or 0.0, reverse=self.direction == "maximize")
        return done[:n]


def _model(pipeline: Pipeline, model: str | None) -> tuple[ModelSpec, list[MetricSpec]]:
    check_models(pipeline.models, pipeline.metrics, pipeline.datasets)
    if not pipeline.models:
        raise DefinitionError(
            f"pipeline {pipeline.name!r} has no @pipe.model; decorate 'def fit(train, params)'"
        )
    if model is None:
        if len(pipeline.models) > 1:
            raise UsageError(f"pick a model to train: one of {', '.join(pipeline.models)}")
        model = next(iter(pipeline.models))
    if model not in pipeline.models:
        raise UsageError(f"no model {model!r} (models: {', '.join(pipeline.models)})")
    spec = pipeline.models[model]
    return spec, [m for m in pipeline.metrics.values() if m.model == spec.name]


def study_pipeline(
    pipeline: Pipeline, spec: ModelSpec, metrics: list[MetricSpec],
    tables: Mapping[str, Table], artifacts: ArtifactStore,
) -> Pipeline:  # fmt: skip
    """The pipeline that runs one trial per item: a resource ``data`` holding train and valid
    (built once per worker) and a step ``trial`` versioned by the code of fit and metrics."""
    study = Pipeline(f"{pipeline.name}.{spec.name}")
    versions = [spec.code_version, *(f"{m.name}={m.code_version}" for m in metrics)]
    versions.append(f"pruner={spec.pruner!r}")
    version = hashlib.sha256("|".join([TRIAL_FORMAT, *versions]).encode()).hexdigest()[:16]
    searched = {name: tables[name] for name in ("train", "valid")}  # golden stays out

    def data() -> Mapping[str, Table]:
        return searched

    def trial(item: Any, data: Mapping[str, Table]) -> dict[str, Any]:
        return run_trial(spec, metrics, dict(item["params"]), data, artifacts,
                         peers=item.get("peers") or ())  # fmt: skip

    study.resource(data)
    # a fit that returns None or a metric that returns no number fails the same way again
    study.step(retries=spec.retries, give_up_on=[DefinitionError], version=version)(trial)
    return study


def run_trial(
    spec: ModelSpec, metrics: list[MetricSpec], params: dict[str, Any],
    data: Mapping[str, Table], artifacts: ArtifactStore, *, peers: Any = (),
) -> dict[str, Any]:  # fmt: skip
    """Fit ``spec`` on train with ``params``, score every metric on valid, save the model.
    ``cv.report`` calls inside fit are recorded; the pruner may stop the fit early, judged
    against ``peers`` (the reports of the trials finished before)."""
    import cloudpickle

    started = time.perf_counter()
    reporter = Reporter(spec.pruner, spec.direction, list(peers))
    try:
        with reporting(reporter):
            fitted = spec.fn(data["train"], params)
    except TrialPruned as pruned:
        return {"value": pruned.value, "metrics": {}, "params": params, "model": None,
                "pruned": True, "reports": sorted(reporter.values.items()),
                "seconds": time.perf_counter() - started, "finished_at": time.time()}  # fmt: skip
    fitted = fitted_model(spec, fitted)
    scores: dict[str, float] = {}
    for metric in metrics:
        value = metric.fn(**{metric.model: fitted, "valid": data["valid"]})
        scores[metric.name] = metric_value(metric, value)
    digest = artifacts.put_bytes(cloudpickle.dumps(fitted))
    return {"value": scores[spec.metric], "metrics": scores, "params": params, "model": digest,
            "pruned": False, "reports": sorted(reporter.values.items()),
            "seconds": time.perf_counter() - started, "finished_at": time.time()}  # fmt: skip


def training_data(
    pipeline: Pipeline,
    spec: ModelSpec,
    table: Table | None,
    artifacts: ArtifactStore,
    *,
    dataset: str | None = None,
    store: str | Path | None = None,
    shares: Mapping[str, float] = TRAINING_SHARES,
    id_column: str | None = None,
    time_column: str | None = None,
    cutoffs: Mapping[str, Any] | None = None,
) -> TrainingData:
    """The data ``spec`` trains on, split: ``table`` when given, else a ``@pipe.dataset``
    (``dataset``, the model's ``dataset=``, or the pipeline's only one) built and checked
    first: a failed check raises :class:`~conveyor.errors.DataCheckFailed` before any trial.
    The golden split is written to ``artifacts`` and pinned by its version."""
    name = None
    if table is None:
        from conveyor.ml.builds import build_dataset
        from conveyor.store import open_store

        name = _dataset_name(pipeline, spec, dataset)
        ledger = open_store(store)
        try:
            build = build_dataset(pipeline, name, ledger, artifacts)
        finally:
            ledger.close()
        table, version = build.table, build.version
    else:
        if dataset is not None:
            raise UsageError("train: give a table or a dataset, not both")
        if num_rows(table) == 0:
            raise UsageError(f"train: the table for model {spec.name!r} has no rows")
        version = fingerprint(table)
    _check_label(spec, table)
    if time_column is not None:
        chosen = dict(cutoffs or {})
        if "golden" not in chosen:
            chosen["golden"] = None  # the golden split takes the rows after the last cut-off
        tables = split_by_time(table, time_column, chosen)
        how: dict[str, Any] = {"by": "time", "column": time_column, "cutoffs": chosen}
    else:
        if cutoffs:
            raise UsageError("train: cut-offs split by a time column; name it (--time-column)")
        tables = split(table, shares, id_column)
        how = {"by": "hash", "shares": dict(shares), "id_column": id_column}
    for needed in ("train", "valid"):
        if needed not in tables:
            raise UsageError(f"train: the split has no {needed!r} part ({', '.join(tables)})")
        if num_rows(tables[needed]) == 0:
            raise UsageError(
                f"train: the {needed} split is empty ({num_rows(table)} rows split {how}); "
                f"give the table more rows or change the split"
            )
    golden = None
    if "golden" in tables and num_rows(tables["golden"]) > 0:
        digest, artifact = artifacts.put_table(tables["golden"])
        golden = {"version": digest, "artifact": artifact, "rows": num_rows(tables["golden"])}
    return TrainingData(tables, version, how, dataset=name, golden=golden)


def _check_label(spec: ModelSpec, table: Table) -> None:
    """A ``label=`` that is not a column of the table is refused before any trial runs (the
    gate would refuse it after the search)."""
    names = column_names(table)
    if spec.label is not None and spec.label not in names:
        raise UsageError(
            f"model {spec.name!r}: label={spec.label!r} is not a column of its table"
            f"{did_you_mean(spec.label, names)} (columns: {', '.join(names)}); fix "
            f"@pipe.model(label=...)"
        )


def _dataset_name(pipeline: Pipeline, spec: ModelSpec, dataset: str | None) -> str:
    if dataset is not None:
        return dataset
    if spec.dataset is not None:
        return spec.dataset
    if len(pipeline.datasets) == 1:
        return next(iter(pipeline.datasets))
    if not pipeline.datasets:
        raise UsageError(
            f"train: model {spec.name!r} has no data: give --input FILE, or define a "
            f"@pipe.dataset and name it with @pipe.model(dataset=...)"
        )
    raise UsageError(
        f"train: pick the dataset model {spec.name!r} trains on: --dataset one of "
        f"{', '.join(pipeline.datasets)} (or @pipe.model(dataset=...))"
    )


def train(
    pipeline: Pipeline,
    model: str | None,
    table: Table | None = None,
    *,
    dataset: str | None = None,
    store: str | Path | None = None,
    artifacts: str | Path | None = None,
    workers: int | None = 2,
    trials: int | None = None,
    seed: int = 0,
    backend: str = "local",
    ray_address: str | None = None,
    shares: Mapping[str, float] = TRAINING_SHARES,
    id_column: str | None = None,
    time_column: str | None = None,
    cutoffs: Mapping[str, Any] | None = None,
    on_trial: Callable[[Trial], object] | None = None,
    on_progress: Callable[[Progress], object] | None = None,
    run_options: Mapping[str, Any] | None = None,
    register: bool = True,
    promote: bool = False,
) -> TrainingResult:
    """Search ``model``'s parameters, each trial a unit on ``workers`` processes (or Ray with
    ``backend="ray"``), and save the best trial's model with its lineage. The data is
    ``table`` or a ``@pipe.dataset`` (see :func:`training_data`), split into train, valid and
    golden by ``shares`` (a hash of ``id_column`` or of each row) or by ``time_column`` at
    ``cutoffs``. ``on_trial`` is called with each trial as it finishes, ``on_progress`` with
    where the search stands as trials start and end. ``run_options`` are recorded with a new
    study run (how ``conveyor resume`` continues it). With ``register``, the best model is
    gated against the champion on the golden split and registered (see
    :mod:`conveyor.ml.release`), and promoted to champion when ``promote`` and the gate
    passes."""
    from conveyor.scheduling.lanes import check_backend
    from conveyor.scheduling.stream import Stream

    spec, metrics = _model(pipeline, model)
    count = spec.trials if trials is None else trials
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"train: trials={count!r} must be a whole number of at least 1")
    check_backend(backend, ray_address, workers)
    store_art = ArtifactStore(artifacts)
    data = training_data(pipeline, spec, table, store_art, dataset=dataset, store=store,
                         shares=shares, id_column=id_column, time_column=time_column,
                         cutoffs=cutoffs)  # fmt: skip
    study = study_pipeline(pipeline, spec, metrics, data.tables, store_art)
    key = hashlib.sha256(
        json.dumps([data.version, data.split, study.steps["trial"].version], default=str).encode()
    ).hexdigest()[:12]
    parallel = max(1, workers or 1)
    with Stream(study, store=store, workers=workers, backend=backend,
                ray_address=ray_address, options=run_options) as stream:  # fmt: skip
        driver = _Driver(stream, spec, key, data.version, count, on_trial, on_progress)
        driver.collect()
        search = Search(spec.search, direction=spec.direction, sampler=spec.sampler,
                        seed=seed + len(driver.done))  # fmt: skip
        search.replay(
            FinishedTrial(t.params, t.value, t.reports, t.pruned) for t in driver.ordered()
        )
        driver.drive(search, parallel)
        run_id = stream.run_id
    done = driver.ordered()
    best = _best(done, spec.direction)
    lineage = _lineage(spec, metrics, data, best, run_id, seed, len(done))
    lineage_artifact = None
    released = None
    if best is not None:
        lineage_artifact = store_art.put_bytes(
            json.dumps(lineage, sort_keys=True, default=str).encode()
        )
        if register and best.model is not None:
            released = _release(spec, metrics, data, best, lineage, run_id, store, store_art,
                                promote)  # fmt: skip
    return TrainingResult(
        model=spec.name, metric=spec.metric, run_id=run_id, data_version=data.version,
        direction=spec.direction, trials=done, best=best,
        artifact=None if best is None else best.model, lineage=lineage,
        lineage_artifact=lineage_artifact, release=released,
    )  # fmt: skip


def _release(
    spec: ModelSpec, metrics: list[MetricSpec], data: TrainingData, best: Trial,
    lineage: Mapping[str, Any], run_id: str, store: str | Path | None,
    artifacts: ArtifactStore, promote: bool,
) -> Release:  # fmt: skip
    import cloudpickle

    from conveyor.ml.registry import Registry
    from conveyor.ml.release import release

    assert best.model is not None
    model = cloudpickle.loads(artifacts.get_bytes(best.model))
    golden = data.tables.get("golden") if data.golden is not None else None
    with Registry(store, artifacts.location) as registry:
        return release(
            registry, spec, metrics, model=model, artifact=best.model, lineage=lineage,
            valid=best.metrics, golden=golden, run_id=run_id, promote=promote,
        )  # fmt: skip


class _Driver:
    """Submits asked trials to the stream, waits for them, and keeps what finished."""

    def __init__(self, stream: Stream, spec: ModelSpec, key: str, version: str, count: int,
                 on_trial: Callable[[Trial], object] | None,
                 on_progress: Callable[[Progress], object] | None = None) -> None:  # fmt: skip
        self.stream, self.spec, self.key, self.version = stream, spec, key, version
        self.count, self.on_trial, self.on_progress = count, on_trial, on_progress
        self.done: dict[int, Trial] = {}
        self.running = 0
        self.started = time.time()
        self._woken = threading.Event()

    def item_id(self, number: int) -> str:
        return f"trial-{number:05d}-{self.key}"

    def ordered(self) -> list[Trial]:
        return [self.done[n] for n in sorted(self.done)]

    def collect(self) -> None:
        """Find the trials finished before (or left running by a killed call: wait for them)."""
        waiting = []
        for number in range(self.count):
            try:
                self._finish(number, {}, self.stream.result(self.item_id(number), timeout=0))
            except UsageError:
                continue  # never submitted
            except TimeoutError:
                waiting.append(number)
            except StepError as exc:
                self._fail(number, self._asked(number), exc, computed=False)
        self.running = len(waiting)
        self._progress(None)
        for number in waiting:
            self._wait_one(number, self._asked(number))
            self.running -= 1
            self._progress(self.done[number])

    def drive(self, search: Search, parallel: int) -> None:
        """Ask, submit, wait and tell until every trial number is finished."""
        todo = [n for n in range(self.count) if n not in self.done]
        running: dict[int, TrialParams] = {}
        cancels = []
        try:
            while todo or running:
                while todo and len(running) < parallel:
                    number = todo.pop(0)
                    [asked] = search.ask(1)
                    running[number] = asked
                    item: dict[str, Any] = {"params": asked.params, "data": self.version}
                    if self.spec.pruner is not None:
                        item["peers"] = self._peers()
                    cancels.append(self.stream.watch(
                        self.stream.submit(item, id=self.item_id(number)), self._woken.set
                    ))  # fmt: skip
                    self.running = len(running)
                    self._progress(None)
                self._woken.wait(0.5)
                self._woken.clear()
                for number, asked in list(running.items()):
                    if self._poll(number, asked.params):
                        trial = self.done[number]
                        search.tell(asked, trial.value, reports=trial.reports,
                                    pruned=trial.pruned)  # fmt: skip
                        del running[number]
                        self.running = len(running)
                        self._progress(trial)
        finally:
            for cancel in cancels:
                cancel()

    def _asked(self, number: int) -> dict[str, Any]:
        """The parameters trial ``number`` was submitted with (a failed trial found again is
        told to the new sampler with them)."""
        item = self.stream.submitted(self.item_id(number))
        params = None if item is None else item.get("params")
        return dict(params) if isinstance(params, Mapping) else {}

    def _peers(self) -> list[dict[str, Any]]:
        """The reports of the trials finished so far, for the pruner in the worker."""
        return [
            {"values": sorted(t.reports.items()), "state": t.state, "value": t.value}
            for t in self.ordered()
            if t.state != "failed"
        ]

    def _progress(self, last: Trial | None) -> None:
        if self.on_progress is None:
            return
        trials = self.done.values()
        best = _best(list(trials), self.spec.direction)
        self.on_progress(Progress(
            total=self.count, done=len(self.done), running=self.running,
            failed=sum(t.state == "failed" for t in trials),
            pruned=sum(t.pruned for t in trials),
            best=None if best is None else best.value, last=last,
        ))  # fmt: skip

    def _poll(self, number: int, params: Mapping[str, Any]) -> bool:
        try:
            self._finish(number, params, self.stream.result(self.item_id(number), timeout=0))
        except TimeoutError:
            return False
        except StepError as exc:
            self._fail(number, params, exc)
        return True

    def _wait_one(self, number: int, params: Mapping[str, Any]) -> None:
        try:
            self._finish(number, params, self.stream.result(self.item_id(number)))
        except StepError as exc:
            self._fail(number, params, exc)

    def _finish(self, number: int, params: Mapping[str, Any], outputs: dict[str, Any]) -> None:
        out = outputs["trial"]
        self._record(Trial(
            number=number, params=out["params"], value=float(out["value"]),
            metrics=out["metrics"], model=out["model"], seconds=float(out["seconds"]),
            computed=float(out["finished_at"]) >= self.started,
            pruned=bool(out.get("pruned")),
            reports={int(step): float(v) for step, v in out.get("reports", ())},
        ))  # fmt: skip

    def _fail(
        self, number: int, params: Mapping[str, Any], exc: StepError, *, computed: bool = True
    ) -> None:
        self._record(Trial(number=number, params=dict(params), value=None, error=str(exc),
                           computed=computed))  # fmt: skip

    def _record(self, trial: Trial) -> None:
        self.done[trial.number] = trial
        if self.on_trial is not None:
            self.on_trial(trial)


def _best(trials: list[Trial], direction: str) -> Trial | None:
    done = [t for t in trials if t.state == "complete"]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: t.value or 0.0)


def _lineage(
    spec: ModelSpec, metrics: list[MetricSpec], data: TrainingData, best: Trial | None,
    run_id: str, seed: int, trials: int,
) -> dict[str, Any]:  # fmt: skip
    """Where the best model came from, for the registry: data, split, code, metrics, run."""
    packages = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "model": spec.name, "format": "cloudpickle", "data_version": data.version,
        "dataset": data.dataset, "split": dict(data.split), "golden": data.golden,
        "params": None if best is None else dict(best.params),
        "metrics": None if best is None else dict(best.metrics),
        "code_versions": {spec.name: spec.code_version,
                          **{m.name: m.code_version for m in metrics}},
        "run_id": run_id, "seed": seed, "trial": None if best is None else best.number,
        "trials": trials, "label": spec.label,
        "artifact": None if best is None else best.model, "packages": packages,
    }  # fmt: skip
