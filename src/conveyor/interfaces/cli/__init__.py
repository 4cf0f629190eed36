"""The command-line interface, one module per command group, registered here in the order
``conveyor --help`` lists them."""

from __future__ import annotations

from conveyor.interfaces.cli import alarms, datasets, dlq, ledger, models, run, serve, train
from conveyor.interfaces.cli.app import app, main

for command in (run.run, serve.watch, serve.serve, serve.dashboard, run.resume, run.worker,
                run.redrive, ledger.status, ledger.results, ledger.runs, ledger.check,
                dlq.errors, alarms.alarms, train.train):  # fmt: skip
    app.command()(command)
app.add_typer(dlq.dlq, name="dlq")
app.add_typer(datasets.datasets, name="datasets")
app.add_typer(models.models, name="models")

__all__ = ["app", "main"]
