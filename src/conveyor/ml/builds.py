"""Building a dataset: call its function, version the table by its content, keep its Parquet
copy once, profile it, run every check, compare it with the version before, and record it in
the ledger. A failed check of severity "error" stops the caller (a training run) after the
version is recorded with its report; warnings are reported and the build goes on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import DataCheckFailed, InputError, UsageError
from conveyor.ml.artifacts import DEFAULT_LOCATION, ArtifactStore
from conveyor.ml.checks import run_checks
from conveyor.ml.compare import Change, compare
from conveyor.ml.datasets import DatasetProfile, profile
from conveyor.ml.report import CheckReport
from conveyor.ml.tables import Table, num_rows, require_table

if TYPE_CHECKING:
    from conveyor.definition.datasets import DatasetSpec
    from conveyor.definition.pipeline import Pipeline
    from conveyor.store.protocols import DatasetLedger


@dataclass(frozen=True)
class DatasetBuild:
    """What building a dataset gave: its version, whether the ledger had it already, its
    profile, the check report, the changes since ``previous`` and its Parquet copy."""

    name: str
    version: str
    new: bool
    profile: DatasetProfile
    report: CheckReport
    changes: tuple[Change, ...]
    previous: str | None
    artifact: str
    #: The table itself, as the dataset function returned it.
    table: Table | None = field(default=None, repr=False, compare=False)

    @property
    def rows(self) -> int:
        """The dataset's row count."""
        return self.profile.rows


def artifacts_beside(store_location: str | None) -> ArtifactStore:
    """The default artifact store: ``artifacts/`` beside a SQLite ledger, else
    ``.conveyor/artifacts/`` under the working folder."""
    text = str(store_location) if store_location else ""
    text = text.removeprefix("sqlite:///")
    if text and "://" not in text and not text.startswith("memory:"):
        return ArtifactStore(Path(os.path.abspath(text)).parent / "artifacts")
    return ArtifactStore(DEFAULT_LOCATION)


def build_dataset(
    pipeline: Pipeline,
    name: str,
    store: DatasetLedger,
    artifacts: ArtifactStore,
    *,
    raise_on_failure: bool = True,
) -> DatasetBuild:
    """Build dataset ``name`` of ``pipeline`` and record its version in ``store``; raise
    :class:`DataCheckFailed` (after recording it) if a check of severity "error" failed,
    unless ``raise_on_failure`` is False (the report is then on the build)."""
    spec = _spec(pipeline, name)
    table = _call(spec)
    report = run_checks(table, spec.checks)
    version, artifact = artifacts.put_table(table)
    current = profile(table)
    previous = next((v for v in store.dataset_versions(name) if v["version"] != version), None)
    changes: tuple[Change, ...] = ()
    if previous is not None:
        changes = tuple(compare(DatasetProfile.from_dict(previous["profile"]), current))
    new = store.record_dataset(
        name=name, version=version, pipeline=pipeline.name, code_version=spec.code_version,
        rows=current.rows, columns=len(current.columns), schema=current.schema,
        profile=current.to_dict(), report=report.to_dict(),
        changes=[c.to_dict() for c in changes], artifact=artifact,
    )  # fmt: skip
    build = DatasetBuild(name, version, new, current, report, changes,
                         None if previous is None else previous["version"], artifact,
                         table)  # fmt: skip
    if raise_on_failure and not report.ok:
        raise failed_checks(build)
    return build


def failed_checks(build: DatasetBuild) -> DataCheckFailed:
    """The error for a build whose checks failed: its message is the readable report."""
    return DataCheckFailed(
        f"dataset {build.name!r} (version {build.version[:12]}) failed its checks; the version "
        f"is recorded with this report:\n{build.report.describe()}",
        dataset=build.name,
        version=build.version,
    )


def _spec(pipeline: Pipeline, name: str) -> DatasetSpec:
    spec = pipeline.datasets.get(name)
    if spec is None:
        known = ", ".join(pipeline.datasets) or "none"
        raise UsageError(
            f"pipeline {pipeline.name!r} has no dataset {name!r} (its datasets: {known}); "
            f"define it with @pipe.dataset"
        )
    return spec


def _call(spec: DatasetSpec) -> Table:
    """The table the dataset's function returns, or an InputError naming it and the fix."""
    where = f"dataset {spec.name!r} ({spec.fn.__module__}.{spec.fn.__qualname__})"
    try:
        value = spec.fn()
    except Exception as e:
        raise InputError(
            f"{where} raised {type(e).__name__}: {e}; fix the function (it is called with no "
            f"arguments and must return a table)"
        ) from e
    table = require_table(value, f"{where}: its return value")
    if num_rows(table) == 0:
        raise InputError(
            f"{where} returned an empty table ({len(table.columns)} columns, no rows); "
            f"check where it reads its data from"
        )
    return table
