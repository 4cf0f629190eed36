"""``conveyor dlq list|show`` and ``conveyor errors``: the dead-letter queue and what failed."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.errors import UsageError
from conveyor.interfaces.cli.app import (
    handled,
    out,
    plural,
)
from conveyor.interfaces.cli.options import (
    JsonOpt,
    RunArg,
    StoreOpt,
)
from conveyor.observability.report import (
    errors_table,
    seconds,
)

if TYPE_CHECKING:
    pass
dlq = typer.Typer(
    help="The dead-letter queue: units that failed their last attempt.", no_args_is_help=True
)


@handled
def dlq_list(
    run_id: RunArg = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step.")] = None,
    error: Annotated[
        str | None, typer.Option("--error", help="Only this error signature (or a prefix).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 100,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a run's dead units with their error."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    units = ledger.dead_units(run.id, step=step, signature=error, limit=limit)
    if as_json:
        print(json.dumps(units, indent=2))
        return
    if not units:
        out.print(f"run {run.id}: the dead-letter queue is empty")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for name in ("unit", "item", "step", "attempts", "signature", "error"):
        table.add_column(name, no_wrap=name != "error")
    for u in units:
        first = (u["error_message"] or "").strip().splitlines()
        table.add_row(
            str(u["unit"]), escape(u["item"]), u["step"], str(u["attempts"]),
            u["signature"] or "-", escape(f"{u['error_type']}: {first[0] if first else ''}"),
        )  # fmt: skip
    out.print(table)
    out.print(f"details: conveyor dlq show UNIT; re-queue after a fix: conveyor redrive {run.id}")


@handled
def dlq_show(
    unit: Annotated[int, typer.Argument(help="The unit id (from 'conveyor dlq list').")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one unit: its input, every attempt with its decision, and the full traceback."""
    from conveyor.sources.names import escape_name
    from conveyor.sources.readers import rebuild_item
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    detail = ledger.unit_detail(unit)
    if detail is None:
        raise UsageError(f"no unit {unit} in the ledger; 'conveyor dlq list' shows dead units")
    item = rebuild_item(detail["kind"], detail["item"], detail["payload"])
    shown: Any = escape_name(item.path) if detail["kind"] == "file" else {
        k: repr(v) for k, v in item.fields.items()
    }  # fmt: skip
    if as_json:
        body: dict[str, Any] = {k: v for k, v in detail.items() if k != "payload"}
        print(json.dumps({**body, "input": shown}, indent=2, default=str))
        return
    out.print(
        f"unit [bold]{detail['unit']}[/] of run {detail['run']}: step [bold]{detail['step']}[/] "
        f"on item [bold]{escape(detail['item'])}[/] is [red]{detail['state']}[/] after "
        f"{plural(detail['attempts'], 'attempt')}"
    )
    out.print(f"input: {escape(str(shown))}")
    for a in detail["attempt_log"]:
        out.print(
            f"  attempt {a['attempt']}: {escape(str(a['error_type']))}: "
            f"{escape((a['error_message'] or '').strip()[:200])} "
            f"[dim]({seconds(a['duration'])}; {escape(a['decision'] or '')})[/]"
        )
    if detail["traceback"]:
        out.print(escape(detail["traceback"].rstrip()), soft_wrap=True)


@handled
def errors(
    run_id: RunArg = None,
    store: StoreOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many groups.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Group a run's failures by step, exception type and message (numbers, ids and paths
    masked), with counts, first/last seen and sample items."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    groups = ledger.error_groups(run.id, limit=limit)
    if as_json:
        print(json.dumps({"run": run.id, "groups": groups}, indent=2))
        return
    if not groups:
        out.print(f"run {run.id}: no failures")
        return
    out.print(errors_table(groups))


dlq.command("list")(dlq_list)
dlq.command("show")(dlq_show)
