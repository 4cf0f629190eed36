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
from conveyor.errors import DefinitionError, StepError, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.datasets import fingerprint
from conveyor.ml.search import FinishedTrial, Search, TrialParams
from conveyor.ml.splits import split
from conveyor.ml.tables import Table, num_rows

if TYPE_CHECKING:
    from conveyor.scheduling.stream import Stream

#: The shares a training table is split into when none are given.
TRAINING_SHARES: Mapping[str, float] = {"train": 0.8, "valid": 0.2}
#: Bumped when what a trial computes changes, so cached trials of older code are not reused.
TRIAL_FORMAT = "1"
_PACKAGES = ("conveyor", "cloudpickle", "numpy", "optuna", "pandas", "pyarrow", "scikit-learn")


@dataclass(frozen=True)
class Trial:
    """A finished trial: its number, parameters, value (None when it failed), every metric,
    the digest of its fitted model, and whether this call computed it."""

    number: int
    params: Mapping[str, Any]
    value: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)
    model: str | None = None
    error: str | None = None
    computed: bool = False
    seconds: float = 0.0


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

    @property
    def computed(self) -> int:
        """How many trials this call ran (the rest were finished before)."""
        return sum(t.computed for t in self.trials)

    @property
    def failed(self) -> int:
        """How many trials failed."""
        return sum(t.value is None for t in self.trials)

    def top(self, n: int = 5) -> list[Trial]:
        """The ``n`` best finished trials, best first."""
        done = [t for t in self.trials if t.value is not None]
        done.sort(key=lambda t: t.value or 0.0, reverse=self.direction == "maximize")
        return done[:n]


def _model(pipeline: Pipeline, model: str | None) -> tuple[ModelSpec, list[MetricSpec]]:
    check_models(pipeline.models, pipeline.metrics)
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
    version = hashlib.sha256("|".join([TRIAL_FORMAT, *versions]).encode()).hexdigest()[:16]

    def data() -> Mapping[str, Table]:
        return tables

    def trial(item: Any, data: Mapping[str, Table]) -> dict[str, Any]:
        return run_trial(spec, metrics, dict(item["params"]), data, artifacts)

    study.resource(data)
    # a fit that returns None or a metric that returns no number fails the same way again
    study.step(retries=spec.retries, give_up_on=[DefinitionError], version=version)(trial)
    return study


def run_trial(
    spec: ModelSpec, metrics: list[MetricSpec], params: dict[str, Any],
    data: Mapping[str, Table], artifacts: ArtifactStore,
) -> dict[str, Any]:  # fmt: skip
    """Fit ``spec`` on train with ``params``, score every metric on valid, save the model."""
    import cloudpickle

    started = time.perf_counter()
    fitted = fitted_model(spec, spec.fn(data["train"], params))
    scores: dict[str, float] = {}
    for metric in metrics:
        value = metric.fn(**{metric.model: fitted, "valid": data["valid"]})
        scores[metric.name] = metric_value(metric, value)
    digest = artifacts.put_bytes(cloudpickle.dumps(fitted))
    return {"value": scores[spec.metric], "metrics": scores, "params": params, "model": digest,
            "seconds": time.perf_counter() - started, "finished_at": time.time()}  # fmt: skip


def train(
    pipeline: Pipeline,
    model: str | None,
    table: Table,
    *,
    store: str | Path | None = None,
    artifacts: str | Path | None = None,
    workers: int | None = 2,
    trials: int | None = None,
    seed: int = 0,
    backend: str = "local",
    shares: Mapping[str, float] = TRAINING_SHARES,
    id_column: str | None = None,
    on_trial: Callable[[Trial], object] | None = None,
    run_options: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Search ``model``'s parameters on ``table`` (split into train/valid by ``shares``), each
    trial a unit on ``workers`` processes, and save the best trial's model with its lineage.
    ``on_trial`` is called with each trial as it finishes (e.g. to show progress);
    ``run_options`` are recorded with a new study run (how ``conveyor resume`` continues it)."""
    from conveyor.scheduling.stream import Stream

    spec, metrics = _model(pipeline, model)
    count = spec.trials if trials is None else trials
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"train: trials={count!r} must be a whole number of at least 1")
    if backend != "local":
        raise UsageError(f"train: backend={backend!r} is not supported yet; use 'local'")
    if num_rows(table) == 0:
        raise UsageError(f"train: the table for model {spec.name!r} has no rows")
    tables = split(table, shares, id_column)
    if any(num_rows(tables[name]) == 0 for name in ("train", "valid")):
        raise UsageError("train: the train or valid split is empty; give the table more rows")
    version = fingerprint(table)
    store_art = ArtifactStore(artifacts)
    study = study_pipeline(pipeline, spec, metrics, tables, store_art)
    key = hashlib.sha256(
        json.dumps([version, dict(shares), id_column, study.steps["trial"].version]).encode()
    ).hexdigest()[:12]
    parallel = max(1, workers or 1)
    with Stream(study, store=store, workers=workers, options=run_options) as stream:
        driver = _Driver(stream, spec, key, version, count, on_trial)
        driver.collect()
        search = Search(spec.search, direction=spec.direction, sampler=spec.sampler,
                        seed=seed + len(driver.done))  # fmt: skip
        search.replay(FinishedTrial(t.params, t.value) for t in driver.ordered())
        driver.drive(search, parallel)
        run_id = stream.run_id
    done = driver.ordered()
    best = _best(done, spec.direction)
    lineage = _lineage(spec, metrics, version, shares, id_column, best, run_id, seed)
    saved = None
    if best is not None:
        saved = store_art.put_bytes(json.dumps(lineage, sort_keys=True, default=str).encode())
    return TrainingResult(
        model=spec.name, metric=spec.metric, run_id=run_id, data_version=version,
        direction=spec.direction, trials=done, best=best,
        artifact=None if best is None else best.model, lineage=lineage, lineage_artifact=saved,
    )  # fmt: skip


class _Driver:
    """Submits asked trials to the stream, waits for them, and keeps what finished."""

    def __init__(self, stream: Stream, spec: ModelSpec, key: str, version: str, count: int,
                 on_trial: Callable[[Trial], object] | None) -> None:  # fmt: skip
        self.stream, self.spec, self.key, self.version = stream, spec, key, version
        self.count, self.on_trial = count, on_trial
        self.done: dict[int, Trial] = {}
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
                self._fail(number, {}, exc)
        for number in waiting:
            self._wait_one(number, {})

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
                    item = {"params": asked.params, "data": self.version}
                    cancels.append(self.stream.watch(
                        self.stream.submit(item, id=self.item_id(number)), self._woken.set
                    ))  # fmt: skip
                self._woken.wait(0.5)
                self._woken.clear()
                for number, asked in list(running.items()):
                    if self._poll(number, asked.params):
                        search.tell(asked, self.done[number].value)
                        del running[number]
        finally:
            for cancel in cancels:
                cancel()

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
        ))  # fmt: skip

    def _fail(self, number: int, params: Mapping[str, Any], exc: StepError) -> None:
        self._record(Trial(number=number, params=dict(params), value=None, error=str(exc),
                           computed=bool(params)))  # fmt: skip

    def _record(self, trial: Trial) -> None:
        self.done[trial.number] = trial
        if self.on_trial is not None:
            self.on_trial(trial)


def _best(trials: list[Trial], direction: str) -> Trial | None:
    done = [t for t in trials if t.value is not None]
    if not done:
        return None
    pick = max if direction == "maximize" else min
    return pick(done, key=lambda t: t.value or 0.0)


def _lineage(
    spec: ModelSpec, metrics: list[MetricSpec], version: str, shares: Mapping[str, float],
    id_column: str | None, best: Trial | None, run_id: str, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """Where the best model came from, for the registry: data, split, code, metrics, run."""
    packages = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "model": spec.name, "format": "cloudpickle", "data_version": version,
        "split": {"shares": dict(shares), "id_column": id_column},
        "params": None if best is None else dict(best.params),
        "metrics": None if best is None else dict(best.metrics),
        "code_versions": {spec.name: spec.code_version,
                          **{m.name: m.code_version for m in metrics}},
        "run_id": run_id, "seed": seed, "trial": None if best is None else best.number,
        "packages": packages,
    }  # fmt: skip
