"""Per-group models: one model per group of a table, gathered into one versioned *model set*.

A per-group training is a normal batch run. Its items are the groups of the table (``--group-by
a,b``, or buckets of groups with ``--buckets N``), and its one step, named after the model,
splits each group's rows into train and valid (by a stable hash of each row), fits the
``@pipe.model`` on train (with fixed parameters, or a small seeded search per group), scores
its ``@pipe.metric`` functions on valid and saves the fitted model in the artifact store. The
step's version is made of the code versions of ``fit`` and the metrics and of the training's
settings, so a second training recomputes nothing and a changed ``fit`` refits every group. A
group that fails (``fit`` raises or returns None, a metric is not a finite number) is a dead
unit, and :func:`redrive_groups` (``conveyor redrive``) finishes it after a fix.

When the run ends, the finished groups are written as one JSON index (group id to model
digest, metrics, rows and parameters, plus the model, group columns, data fingerprint and code
versions) into the content-addressed artifact store: its digest is the model set's version.
:func:`load_model_set` reads it back; :meth:`ModelSet.model` gives one group's model.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.units import RunInfo, RunState, StepStats, UnitState
from conveyor.definition.models import MetricSpec, ModelSpec
from conveyor.definition.pipeline import Pipeline
from conveyor.definition.search import Choice, Float, Int, Log, Space
from conveyor.definition.step import did_you_mean
from conveyor.errors import InputError, UsageError
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.datasets import fingerprint
from conveyor.ml.search import FinishedTrial, Search
from conveyor.ml.splits import assign
from conveyor.ml.training import _model as choose_model
from conveyor.scheduling.coordinator import (
    Coordinator,
    check_resumable,
    coordinator_alive,
    parse_lease,
)
from conveyor.scheduling.hooks import Hooks
from conveyor.sources.readers import SourceSpec, check_spec
from conveyor.sources.records import group_id, groups, read_frame
from conveyor.store import Store, open_store

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GroupModel",
    "GroupTraining",
    "ModelSet",
    "fixed_params",
    "group_pipeline",
    "is_group_training",
    "load_model_set",
    "redrive_groups",
    "train_groups",
]

#: The ``format`` of a model set's index.
MODEL_SET_FORMAT = "conveyor.model-set/1"
#: Bumped when what a group's unit computes changes, so results of older code are not reused.
GROUP_FORMAT = "1"
#: How each group's rows are split: groups are small, so no golden part is held out of them.
GROUP_SHARES: Mapping[str, float] = {"train": 0.8, "valid": 0.2}
#: The key of a per-group training's settings in its run's options.
OPTIONS_KEY = "training"


@dataclass(frozen=True)
class GroupSettings:
    """What a per-group training was asked: enough to rebuild its pipeline for a redrive (it
    is recorded in the run's options under ``"training"``)."""

    model: str
    group_by: tuple[str, ...]
    input: str
    artifacts: str
    data_version: str
    buckets: int | None = None
    trials: int = 1
    seed: int = 0
    shares: Mapping[str, float] = field(default_factory=lambda: dict(GROUP_SHARES))

    def to_json(self) -> dict[str, Any]:
        """The settings as the run's options record them."""
        return {
            "kind": "groups", "model": self.model, "group_by": list(self.group_by),
            "input": self.input, "artifacts": self.artifacts, "data_version": self.data_version,
            "buckets": self.buckets, "trials": self.trials, "seed": self.seed,
            "shares": dict(self.shares),
        }  # fmt: skip

    @classmethod
    def from_run(cls, run: RunInfo) -> GroupSettings:
        """The settings a run was started with (UsageError if it is no per-group training)."""
        found = run.options.get(OPTIONS_KEY)
        if not is_group_training(run) or not isinstance(found, Mapping):
            raise UsageError(
                f"run {run.id} is not a per-group training (conveyor train --group-by)"
            )
        return cls(
            model=found["model"], group_by=tuple(found["group_by"]), input=found["input"],
            artifacts=found["artifacts"], data_version=found["data_version"],
            buckets=found.get("buckets"), trials=int(found.get("trials", 1)),
            seed=int(found.get("seed", 0)), shares=dict(found.get("shares") or GROUP_SHARES),
        )  # fmt: skip


@dataclass(frozen=True)
class GroupModel:
    """One group's fitted model: its digest in the artifact store, its metrics on valid, its
    rows (all, train, valid), the parameters it was fitted with and the trials it took."""

    group: str
    model: str
    metrics: Mapping[str, float]
    rows: int
    params: Mapping[str, Any]
    train_rows: int = 0
    valid_rows: int = 0
    trials: int = 1


@dataclass(frozen=True)
class GroupTraining:
    """The outcome of :func:`train_groups` or :func:`redrive_groups`: every finished group,
    the failed ones (item id to error), and the model set's version (None if no group
    finished)."""

    model: str
    metric: str
    direction: str
    run_id: str
    state: RunState
    group_by: tuple[str, ...]
    groups: dict[str, GroupModel]
    failed: dict[str, str]
    model_set: str | None
    data_version: str
    artifacts: str
    stats: list[StepStats]
    seconds: float = 0.0
    #: The model set's index as written under :attr:`model_set` (None if no group finished).
    index: Mapping[str, Any] | None = None

    @property
    def computed(self) -> int:
        """Units (groups, or buckets) this call fitted; the rest came from the cache."""
        return sum(s.counts.get(UnitState.DONE.value, 0) for s in self.stats)

    @property
    def cached(self) -> int:
        """Units whose result was already in the ledger."""
        return sum(s.counts.get(UnitState.CACHED.value, 0) for s in self.stats)

    def ranked(self) -> list[GroupModel]:
        """The finished groups, best first by the model's metric."""
        return sorted(
            self.groups.values(),
            key=lambda g: g.metrics[self.metric],
            reverse=self.direction == "maximize",
        )


# the pipeline ------------------------------------------------------------------------------------
def group_pipeline(pipeline: Pipeline, settings: GroupSettings) -> Pipeline:
    """The pipeline of a per-group training: one step, named after the model, that fits the
    model on each item's group (or on each group of a bucket) and returns their records."""
    spec, metrics = choose_model(pipeline, settings.model)
    synthesized = Pipeline(f"{pipeline.name}.{spec.name}.groups")
    version = step_version(spec, metrics, settings)

    def fit(item: Any) -> dict[str, Any]:  # worker processes limit BLAS/OpenMP threads
        return fit_item(spec, metrics, settings, version, item.id, item.frame)

    fit.__name__ = fit.__qualname__ = spec.name
    synthesized.step(retries=spec.retries, version=version)(fit)
    return synthesized


def step_version(spec: ModelSpec, metrics: Sequence[MetricSpec], settings: GroupSettings) -> str:
    """The code versions of fit and the metrics, and the settings that change a fit."""
    settled = [settings.trials, settings.seed, dict(settings.shares), spec.metric,
               spec.direction, spec.sampler, _spaces(spec.search)]  # fmt: skip
    codes = [spec.code_version, *(f"{m.name}={m.code_version}" for m in metrics)]
    parts = [GROUP_FORMAT, *codes, json.dumps(settled, default=str)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _spaces(search: Mapping[str, Space]) -> list[Any]:
    return sorted([name, repr(space)] for name, space in search.items())


def fit_item(
    spec: ModelSpec, metrics: Sequence[MetricSpec], settings: GroupSettings, version: str,
    item_id: str, frame: pd.DataFrame,
) -> dict[str, Any]:  # fmt: skip
    """The unit of work: fit every group of one item (one group, or a bucket of groups) and
    return ``{"groups": {group id: record}}``. In a bucket, one failing group fails the unit,
    naming the groups that failed."""
    if not settings.buckets:
        return {"groups": {item_id: fit_group(spec, metrics, settings, version, item_id, frame)}}
    columns = list(settings.group_by)
    done: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    parts = frame.groupby(columns, sort=True, dropna=False)
    for values, group in parts:
        gid = group_id(settings.group_by, values)
        try:
            done[gid] = fit_group(spec, metrics, settings, version, gid, group)
        except Exception as exc:
            failures.append(f"{gid}: {type(exc).__name__}: {exc}")
    if failures:
        shown = "; ".join(failures[:5]) + ("; ..." if len(failures) > 5 else "")
        raise GroupsFailed(
            f"{len(failures)} of {parts.ngroups} groups of {item_id} failed: {shown}"
        )
    return {"groups": done}


class GroupsFailed(Exception):
    """Some groups of a bucket failed (the message names them)."""


def fit_group(
    spec: ModelSpec, metrics: Sequence[MetricSpec], settings: GroupSettings, version: str,
    gid: str, frame: pd.DataFrame,
) -> dict[str, Any]:  # fmt: skip
    """Split one group's rows, fit (fixed parameters, or a search of ``settings.trials``
    trials whose first is the fixed parameters), save the best model, and return its record."""
    data = frame.reset_index(drop=True)
    # the key columns are the same on every row of a group: hashing them would cost time only
    keyless = data.drop(columns=[c for c in settings.group_by if c in data.columns])
    where = assign(keyless if len(keyless.columns) else data, settings.shares)
    names = list(settings.shares)
    train = data.iloc[np.flatnonzero(where == names.index("train"))]
    valid = data.iloc[np.flatnonzero(where == names.index("valid"))]
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(
            f"group {gid!r} has {len(frame)} rows, too few to split into train and valid "
            f"({len(train)} and {len(valid)} rows); drop groups this small from the table"
        )
    params = fixed_params(spec.search)
    fitted, scores = _fit_and_score(spec, metrics, params, train, valid, gid)
    tried = 1
    if settings.trials > 1 and spec.search:
        search = Search(spec.search, direction=spec.direction, sampler=spec.sampler,
                        seed=_group_seed(settings.seed, gid))  # fmt: skip
        search.replay([FinishedTrial(params, scores[spec.metric])])
        sign = 1.0 if spec.direction == "maximize" else -1.0
        for _ in range(settings.trials - 1):
            [asked] = search.ask(1)
            tried += 1
            try:
                candidate, found = _fit_and_score(spec, metrics, asked.params, train, valid, gid)
            except Exception:
                search.tell(asked, None)  # a failed trial; the group fails only if all do
                continue
            search.tell(asked, found[spec.metric])
            if sign * found[spec.metric] > sign * scores[spec.metric]:
                fitted, scores, params = candidate, found, dict(asked.params)
    import cloudpickle

    digest = ArtifactStore(settings.artifacts).put_bytes(cloudpickle.dumps(fitted))
    return {"model": digest, "metrics": scores, "params": params, "rows": len(frame),
            "train_rows": len(train), "valid_rows": len(valid), "trials": tried,
            "code": version}  # fmt: skip


def _fit_and_score(
    spec: ModelSpec, metrics: Sequence[MetricSpec], params: Mapping[str, Any],
    train: Any, valid: Any, gid: str,
) -> tuple[Any, dict[str, float]]:  # fmt: skip
    fitted = spec.fn(train, dict(params))
    if fitted is None:
        raise ValueError(f"fit {spec.name!r} returned None for group {gid!r}; return the model")
    scores: dict[str, float] = {}
    for metric in metrics:
        value = metric.fn(**{metric.model: fitted, "valid": valid})
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(
                f"metric {metric.name!r} returned {value!r} for group {gid!r}; a metric must "
                f"return a finite number"
            )
        scores[metric.name] = number
    return fitted, scores


def fixed_params(search: Mapping[str, Space]) -> dict[str, Any]:
    """The parameters a group is fitted with without a search: the middle of each range (the
    geometric middle of a log range, rounded to the step of an int range) and the first value
    of each choice."""
    params: dict[str, Any] = {}
    for name, space in search.items():
        if isinstance(space, Int):
            params[name] = space.low + (space.high - space.low) // space.step // 2 * space.step
        elif isinstance(space, Float):
            params[name] = (space.low + space.high) / 2
        elif isinstance(space, Log):
            params[name] = math.sqrt(space.low * space.high)
        elif isinstance(space, Choice):
            params[name] = space.values[0]
    return params


def _group_seed(seed: int, gid: str) -> int:
    return (seed + int(hashlib.blake2b(gid.encode(), digest_size=4).hexdigest(), 16)) % 2**31


# the run -----------------------------------------------------------------------------------------
def train_groups(
    pipeline: Pipeline,
    input: str | Path,
    group_by: Sequence[str],
    *,
    model: str | None = None,
    buckets: int | None = None,
    trials: int = 1,
    seed: int = 0,
    shares: Mapping[str, float] = GROUP_SHARES,
    store: str | Path | Store | None = None,
    artifacts: str | Path | None = None,
    workers: int | None = 2,
    executor: str = "local",
    hooks: Sequence[Hooks] = (),
    pipeline_file: str | None = None,
    new: bool = False,
) -> GroupTraining:
    """Fit ``model`` once per group of the table at ``input`` (by the ``group_by`` columns,
    packed into ``buckets`` units if given), each group a unit on ``workers`` processes, and
    write the model set. ``trials`` > 1 searches each group's parameters (the first trial is
    :func:`fixed_params`). An unfinished training of the same table and code is continued."""
    spec, _ = choose_model(pipeline, model)
    columns = tuple(c.strip() for c in group_by if c.strip())
    if not columns:
        raise UsageError("--group-by: name the column(s) that make a group, e.g. segment,location")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UsageError(f"--group-trials {trials!r}: give a whole number of at least 1")
    source = SourceSpec(str(input), group_by=columns, buckets=buckets)
    check_spec(source)
    path = Path(input)
    frame = _read(path, columns)
    assign(frame.iloc[:1], shares)  # bad shares fail here, not in every unit
    if "train" not in shares or "valid" not in shares:
        raise UsageError(f"shares={dict(shares)!r}: give a 'train' and a 'valid' share")
    art = ArtifactStore(artifacts)
    settings = GroupSettings(
        model=spec.name, group_by=columns, input=str(input), artifacts=art.location,
        data_version=fingerprint(frame), buckets=buckets, trials=trials, seed=seed,
        shares=dict(shares),
    )  # fmt: skip
    synthesized = group_pipeline(pipeline, settings)
    ledger = store if isinstance(store, Store) else open_store(store)
    try:
        coordinator = Coordinator(synthesized, ledger, list(synthesized.graph.order), hooks=hooks)
        run = None if new else _resumable(ledger, synthesized, source, coordinator, settings)
        if run is not None:
            coordinator.adopt(run)
            items = groups(frame, columns, buckets, path)
            plan = coordinator.plan_so_far() if run.planned else coordinator.plan(items)
            plan.resumed = True
        else:
            coordinator.create(source=source.describe(), pipeline_file=pipeline_file, options={
                "input": str(input), "group_by": list(columns), "buckets": buckets,
                "executor": executor, OPTIONS_KEY: settings.to_json(),
            })  # fmt: skip
            coordinator.plan(groups(frame, columns, buckets, path))
        state, stats = coordinator.drive(workers, backend=executor)
        return collect(ledger, coordinator.run_id, pipeline, settings, state, stats,
                       seconds=_elapsed(coordinator))  # fmt: skip
    finally:
        if not isinstance(store, Store):
            ledger.close()


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The table, checked before anything is recorded: the group columns exist, it has rows."""
    frame = read_frame(path)
    names = [str(c) for c in frame.columns]
    for column in columns:
        if column not in names:
            raise UsageError(
                f"--group-by {column!r}: {path.name} has no such column"
                f"{did_you_mean(column, names)}; its columns are {', '.join(names)}"
            )
    if len(frame) == 0:
        raise UsageError(f"--input {path}: the table has no rows, so there is no group to train")
    return frame


def _resumable(
    ledger: Store, pipeline: Pipeline, source: SourceSpec, coordinator: Coordinator,
    settings: GroupSettings,
) -> RunInfo | None:  # fmt: skip
    """An unfinished training of the same table (same content) and code, to continue."""
    run_id = ledger.find_resumable(pipeline.name, source.describe(), coordinator.signature)
    if run_id is None:
        return None
    run = ledger.get_run(run_id)
    if GroupSettings.from_run(run).data_version != settings.data_version:
        return None  # the table changed since: a new training
    check_resumable(run, pipeline.name, coordinator.signature)
    return run


def redrive_groups(
    pipeline: Pipeline,
    run_id: str | None = None,
    *,
    store: str | Path | Store | None = None,
    workers: int | None = 2,
    hooks: Sequence[Hooks] = (),
) -> GroupTraining:
    """Re-queue the failed groups of a per-group training (after a fix in ``pipeline``'s
    code), fit them, and write the model set again with every group that is now finished."""
    ledger = store if isinstance(store, Store) else open_store(store, create=False)
    try:
        run = ledger.get_run(run_id)
        settings = GroupSettings.from_run(run)
        synthesized = group_pipeline(pipeline, settings)
        if run.pipeline != synthesized.name:
            raise UsageError(
                f"run {run.id} trained {run.pipeline!r}, not {synthesized.name!r}; redrive it "
                f"with the pipeline file it was started with"
            )
        if run.state is RunState.RUNNING and coordinator_alive(run):
            raise UsageError(f"run {run.id} is still running; redrive it once it has finished")
        dead = ledger.dead_units(run.id)
        if not dead:
            raise UsageError(f"run {run.id} has no failed groups; nothing to redrive")
        coordinator = Coordinator(synthesized, ledger, run.steps, hooks=hooks,
                                  lease=parse_lease(run.options.get("lease")))  # fmt: skip
        coordinator.requeue_dead(run.id, dead)
        coordinator.adopt(run)
        coordinator.plan_so_far()
        state, stats = coordinator.drive(workers, backend=run.options.get("executor") or "local")
        return collect(ledger, run.id, pipeline, settings, state, stats,
                       seconds=_elapsed(coordinator))  # fmt: skip
    finally:
        if not isinstance(store, Store):
            ledger.close()


def is_group_training(run: RunInfo) -> bool:
    """Whether ``run`` is a per-group training (its redrive must rebuild its pipeline)."""
    found = run.options.get(OPTIONS_KEY)
    return isinstance(found, Mapping) and found.get("kind") == "groups"


def _elapsed(coordinator: Coordinator) -> float:
    return time.perf_counter() - coordinator.started


# the model set -----------------------------------------------------------------------------------
def collect(
    ledger: Store, run_id: str, pipeline: Pipeline, settings: GroupSettings, state: RunState,
    stats: list[StepStats], *, seconds: float = 0.0,
) -> GroupTraining:  # fmt: skip
    """Gather the finished groups of a run from the ledger and write its model set (of the
    finished groups; the failed ones are listed in it as missing)."""
    spec, metrics = choose_model(pipeline, settings.model)
    found: dict[str, GroupModel] = {}
    for _item, values in ledger.export_rows(run_id):
        for _state, blob in values.values():
            if blob is not None:
                for gid, record in pickle.loads(blob)["groups"].items():
                    found[gid] = _record(gid, record)
    failed: dict[str, str] = {}
    for dead in ledger.dead_units(run_id):
        lines = (dead["error_message"] or "").strip().splitlines()
        failed[dead["item"]] = f"{dead['error_type']}: {lines[0] if lines else ''}"
    version = index = None
    if found:
        index = {
            "format": MODEL_SET_FORMAT, "pipeline": pipeline.name, "model": spec.name,
            "metric": spec.metric, "direction": spec.direction,
            "group_by": list(settings.group_by), "buckets": settings.buckets,
            "data_version": settings.data_version,
            "code_versions": {spec.name: spec.code_version,
                              **{m.name: m.code_version for m in metrics}},
            "settings": {"trials": settings.trials, "seed": settings.seed,
                         "shares": dict(settings.shares)},
            "groups": {gid: _entry(g) for gid, g in sorted(found.items())},
            "missing": dict(sorted(failed.items())), "complete": not failed,
        }  # fmt: skip
        data = json.dumps(index, sort_keys=True, separators=(",", ":"), default=str).encode()
        version = ArtifactStore(settings.artifacts).put_bytes(data)
    return GroupTraining(
        model=spec.name, metric=spec.metric, direction=spec.direction, run_id=run_id,
        state=state, group_by=settings.group_by, groups=found, failed=failed, model_set=version,
        data_version=settings.data_version, artifacts=settings.artifacts, stats=stats,
        seconds=seconds, index=index,
    )  # fmt: skip


def _record(gid: str, record: Mapping[str, Any]) -> GroupModel:
    return GroupModel(
        group=gid, model=record["model"], metrics=dict(record["metrics"]), rows=record["rows"],
        params=dict(record["params"]), train_rows=record.get("train_rows", 0),
        valid_rows=record.get("valid_rows", 0), trials=record.get("trials", 1),
    )  # fmt: skip


def _entry(group: GroupModel) -> dict[str, Any]:
    return {"model": group.model, "metrics": dict(group.metrics), "rows": group.rows,
            "train_rows": group.train_rows, "valid_rows": group.valid_rows,
            "params": dict(group.params), "trials": group.trials}  # fmt: skip


class ModelSet(Mapping[str, Mapping[str, Any]]):
    """A model set: its index (group id to model digest, metrics, rows, parameters) and, by
    group, the fitted model (:meth:`model`, loaded once and kept)."""

    def __init__(self, version: str, index: Mapping[str, Any], artifacts: ArtifactStore) -> None:
        self.version = version
        self.index = index
        self.artifacts = artifacts
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelSet({self.version[:12]}, model={self.name!r}, groups={len(self)})"

    @property
    def name(self) -> str:
        """The model's name (its fit function)."""
        return str(self.index["model"])

    @property
    def group_by(self) -> tuple[str, ...]:
        """The columns whose values make a group."""
        return tuple(self.index["group_by"])

    @property
    def missing(self) -> Mapping[str, str]:
        """The groups (or buckets) that failed in training, with their error."""
        return dict(self.index.get("missing") or {})

    @property
    def complete(self) -> bool:
        """Whether every group was trained."""
        return bool(self.index.get("complete"))

    def __getitem__(self, group: str) -> Mapping[str, Any]:
        entries: Mapping[str, Mapping[str, Any]] = self.index["groups"]
        if group not in entries:
            raise KeyError(group)
        return entries[group]

    def __iter__(self) -> Iterator[str]:
        return iter(self.index["groups"])

    def __len__(self) -> int:
        return len(self.index["groups"])

    def group_id(self, **keys: Any) -> str:
        """The id of the group with these key values: ``group_id(segment="a", location=3)``
        is ``"segment=a/location=3"``."""
        if set(keys) != set(self.group_by):
            raise UsageError(
                f"model set {self.name!r} is keyed by {', '.join(self.group_by)}; "
                f"pass exactly those (got {', '.join(keys) or 'none'})"
            )
        return group_id(self.group_by, tuple(keys[c] for c in self.group_by))

    def model(self, group: str) -> Any:
        """The fitted model of ``group`` (an id such as ``"segment=a/location=3"``)."""
        with self._lock:
            if group in self._models:
                return self._models[group]
        if group not in self.index["groups"]:
            where = " (it failed in training)" if group in self.missing else ""
            raise InputError(
                f"model set {self.version[:12]} has no model for group {group!r}{where}"
                f"{did_you_mean(group, self.index['groups'])}"
            )
        import cloudpickle

        fitted = cloudpickle.loads(self.artifacts.get_bytes(self[group]["model"]))
        with self._lock:
            self._models[group] = fitted
        return fitted


def load_model_set(artifacts: str | Path | ArtifactStore | None, version: str) -> ModelSet:
    """The model set stored under ``version`` in the artifact store at ``artifacts`` (a
    folder or fsspec URL; None: ``.conveyor/artifacts``)."""
    store = artifacts if isinstance(artifacts, ArtifactStore) else ArtifactStore(artifacts)
    try:
        index = json.loads(store.get_bytes(version))
    except (UnicodeDecodeError, json.JSONDecodeError):
        index = None
    if not isinstance(index, dict) or index.get("format") != MODEL_SET_FORMAT:
        raise InputError(f"artifact {version} in {store.location} is not a model set")
    return ModelSet(version, index, store)
