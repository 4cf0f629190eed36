"""``conveyor alarms``: which alarm rules fired and resolved."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from rich import box
from rich.markup import escape
from rich.table import Table

from conveyor.interfaces.cli.app import (
    handled,
    out,
)
from conveyor.interfaces.cli.options import (
    JsonOpt,
    RunArg,
    StoreOpt,
)

if TYPE_CHECKING:
    pass


@handled
def alarms(run_id: RunArg = None, store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """A run's alarms: which fired, which resolved, their last value and why."""
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    found = ledger.alarms(run.id)
    if as_json:
        print(json.dumps({"run": run.id, "alarms": found}, indent=2))
        return
    if not found:
        out.print(f"run {run.id}: no alarm has fired")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("alarm", "state", "since", "message"):
        table.add_column(column)
    for alarm in found:
        style = "red" if alarm["state"] == "firing" else "green"
        since = datetime.fromtimestamp(alarm["changed_at"]).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(escape(alarm["name"]), f"[{style}]{alarm['state']}[/]", since,
                      escape(alarm["message"]))  # fmt: skip
    out.print(table)
