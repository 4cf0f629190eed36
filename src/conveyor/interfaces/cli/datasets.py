"""``conveyor datasets build|list|show|diff``: versions of a pipeline's datasets, their checks,
schemas and statistics, and what changed between two versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from conveyor.errors import DataCheckFailed, UsageError
from conveyor.interfaces.cli.app import handled, out, plural
from conveyor.interfaces.cli.dataset_tables import (
    changes_table,
    checks_status,
    checks_table,
    columns_table,
    moves_table,
    versions_table,
    when,
)
from conveyor.interfaces.cli.options import JsonOpt, PipelineArg, StoreOpt

if TYPE_CHECKING:
    from conveyor.ml.builds import DatasetBuild
    from conveyor.store.rows import DatasetRecord

datasets = typer.Typer(
    help="Versioned datasets: build and check them, list, show and compare their versions.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The dataset (its function's name).")]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        envvar="CONVEYOR_ARTIFACTS",
        help="Where Parquet copies go: a folder or an fsspec URL (s3://...) [default: "
        "artifacts/ beside a SQLite ledger, else .conveyor/artifacts].",
    ),
]


@handled
def build(
    pipeline: PipelineArg,
    name: Annotated[
        str | None, typer.Argument(help="One dataset (default: all of the pipeline's).")
    ] = None,
    store: StoreOpt = None,
    artifacts: ArtifactsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Version and check the pipeline's datasets (nothing is trained); exit 2 if a check fails."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.ml.artifacts import ArtifactStore
    from conveyor.ml.builds import artifacts_beside, build_dataset
    from conveyor.store import open_store

    pipe, _ = load_pipeline(pipeline)
    if not pipe.datasets:
        raise UsageError(
            f"{pipeline}: pipeline {pipe.name!r} has no datasets; decorate a function that "
            f"returns a table with @pipe.dataset"
        )
    if name is not None and name not in pipe.datasets:
        raise UsageError(
            f"pipeline {pipe.name!r} has no dataset {name!r}; its datasets are "
            f"{', '.join(pipe.datasets)}"
        )
    ledger = open_store(store)
    place = ArtifactStore(artifacts) if artifacts else artifacts_beside(ledger.location)
    builds = [
        build_dataset(pipe, n, ledger, place, raise_on_failure=False)
        for n in ([name] if name else list(pipe.datasets))
    ]
    if as_json:
        print(json.dumps([_build_json(b) for b in builds], indent=2))
    else:
        for b in builds:
            _print_build(b)
    failed = [b for b in builds if not b.report.ok]
    if failed:
        raise _failed(failed)


def _failed(failed: list[DatasetBuild]) -> DataCheckFailed:
    from conveyor.ml.builds import failed_checks

    errors = [failed_checks(b) for b in failed]
    message = "\n".join(str(e) for e in errors)
    return DataCheckFailed(message, dataset=failed[0].name, version=failed[0].version)


def _print_build(b: DatasetBuild) -> None:
    state = "new" if b.new else "unchanged"
    out.print(
        f"dataset [bold]{escape(b.name)}[/] version {b.version[:12]} ({state}): "
        f"{b.rows:,} rows, {plural(len(b.profile.columns), 'column')}"
    )
    report = b.report.to_dict()
    out.print(f"  checks: {checks_status(report)}")
    if b.report.failures:
        out.print(checks_table(report))
    if b.previous is None:
        out.print("  changes: none (the first version)")
    elif not b.changes:
        out.print(f"  changes since {b.previous[:12]}: none")
    else:
        out.print(f"  changes since {b.previous[:12]}:")
        out.print(changes_table([c.to_dict() for c in b.changes]))


def _build_json(b: DatasetBuild) -> dict[str, Any]:
    return {
        "name": b.name,
        "version": b.version,
        "new": b.new,
        "previous": b.previous,
        "rows": b.rows,
        "columns": len(b.profile.columns),
        "artifact": b.artifact,
        "ok": b.report.ok,
        "report": b.report.to_dict(),
        "changes": [c.to_dict() for c in b.changes],
    }


@handled
def list_datasets(
    name: Annotated[
        str | None, typer.Argument(help="One dataset: its versions (default: every dataset).")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the datasets with their latest versions, or one dataset's versions."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    if name is not None:
        ledger.get_dataset(name)  # an unknown name: a clear error
        records = ledger.dataset_versions(name)
    else:
        records = [ledger.get_dataset(n) for n in ledger.dataset_names()]
    if as_json:
        print(json.dumps([_summary(r) for r in records], indent=2))
        return
    if not records:
        out.print("no datasets yet; build them with 'conveyor datasets build FILE.py'")
        return
    out.print(versions_table(records))


def _summary(r: DatasetRecord) -> dict[str, Any]:
    keys = (
        "name",
        "version",
        "pipeline",
        "code_version",
        "created_at",
        "seen_at",
        "rows",
        "columns",
        "artifact",
    )
    summary: dict[str, Any] = {k: r[k] for k in keys}  # type: ignore[literal-required]
    failures = r["report"].get("failures", [])
    summary["ok"] = all(f["severity"] != "error" for f in failures)
    summary["changes"] = len(r["changes"])
    return summary


@handled
def show(
    name: NameArg,
    version: Annotated[
        str | None, typer.Argument(help="A version or its prefix (default: the latest).")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a version of a dataset: its schema, per-column statistics, checks and changes."""
    from conveyor.store import open_store

    record = open_store(store, create=False).get_dataset(name, version)
    if as_json:
        print(json.dumps(record, indent=2))
        return
    out.print(
        f"dataset [bold]{escape(record['name'])}[/] version {record['version']}\n"
        f"  pipeline {escape(record['pipeline'])}, {record['rows']:,} rows, "
        f"{plural(record['columns'], 'column')}, first built {when(record['created_at'])}, "
        f"last built {when(record['seen_at'])}\n  parquet: {escape(record['artifact'])}"
    )
    out.print(columns_table(record["profile"]))
    out.print(f"checks: {checks_status(record['report'])}")
    if record["report"].get("failures"):
        out.print(checks_table(record["report"]))
    if record["changes"]:
        out.print("changes since the version before it:")
        out.print(changes_table(record["changes"]))


@handled
def diff(
    name: NameArg,
    before: Annotated[str, typer.Argument(help="The older version (or its prefix).")],
    after: Annotated[str, typer.Argument(help="The newer version (or its prefix).")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions of a dataset: columns added, removed or retyped, and distributions
    that moved."""
    from conveyor.ml.compare import compare
    from conveyor.ml.datasets import DatasetProfile
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    old, new = ledger.get_dataset(name, before), ledger.get_dataset(name, after)
    changes = [
        c.to_dict()
        for c in compare(
            DatasetProfile.from_dict(old["profile"]), DatasetProfile.from_dict(new["profile"])
        )
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "name": name,
                    "before": old["version"],
                    "after": new["version"],
                    "rows": [old["rows"], new["rows"]],
                    "changes": changes,
                },
                indent=2,
            )
        )
        return
    out.print(
        f"dataset [bold]{escape(name)}[/] {old['version'][:12]} ({old['rows']:,} rows) → "
        f"{new['version'][:12]} ({new['rows']:,} rows): {plural(len(changes), 'change')}"
    )
    if changes:
        out.print(changes_table(changes))
    out.print(moves_table(old["profile"], new["profile"]))


datasets.command("build")(build)
datasets.command("list")(list_datasets)
datasets.command("show")(show)
datasets.command("diff")(diff)
