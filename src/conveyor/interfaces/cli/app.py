"""The ``conveyor`` command: its Typer app, consoles, global options and the helpers that
several command groups share.

Exit codes: 0 the run completed; 1 it completed with failed units; 2 bad usage, a bad pipeline
definition or unusable input (nothing ran); 3 the ledger could not be used; 130 interrupted.
Every option can also be set with an environment variable ``CONVEYOR_<OPTION>``, e.g.
``CONVEYOR_STORE=/data/ledger.db``."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from conveyor.errors import ConveyorError, UsageError

if TYPE_CHECKING:
    from conveyor.core.units import RunInfo
    from conveyor.definition.alarms import AlarmRule
    from conveyor.definition.pipeline import Pipeline
    from conveyor.store import Store

EXIT_OK, EXIT_FAILED_UNITS, EXIT_USAGE, EXIT_STORE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: ``conveyor train`` finished and registered its model, but the challenger failed its gate.
EXIT_GATE_FAILED = 4

app = typer.Typer(
    name="conveyor",
    help="Run machine-learning pipelines of plain Python functions over a batch, in parallel, "
    "durably; see what happened; export the results.",
    epilog="Exit codes: 0 completed, 1 completed with failed units, 2 bad usage / pipeline / "
    "input, 3 ledger unusable, 4 trained but the challenger failed its gate, 130 interrupted. "
    "Every option reads CONVEYOR_<OPTION> too.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
for _console in (out, err):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = 120  # logs and pipes: Rich would assume 80 columns and cut tables

F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _global_options(
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="CONVEYOR_LOG_FORMAT",
            help="How events (runs, failed units, lost workers, alarms) are logged to stderr: "
            "text or json (one object per line).",
        ),
    ] = "text",
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="CONVEYOR_LOG_LEVEL",
            help="debug, info, warning or error [default: warning for text, info for json].",
        ),
    ] = None,
) -> None:
    """Options that come before the command: conveyor --log-format json run ..."""
    from conveyor.core.logs import configure

    try:
        configure(log_format, log_level)
    except ValueError as exc:
        err.print(f"[red]error:[/] --log-format/--log-level: {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None


def handled(fn: F) -> F:
    """Turn Conveyor errors into one red line and their exit code; Ctrl-C into 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConveyorError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[magenta]interrupted[/]: run the same command again to continue")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def split_list(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def alarm_rules(pipe: Pipeline, path: str | None) -> list[AlarmRule]:
    """The rules of an --alarms file, checked against the pipeline's steps."""
    if path is None:
        return []
    from conveyor.definition.alarms import check_steps, load_rules, rules

    found = load_rules(path)
    rules([*pipe.alarms, *found], f"--alarms {path} with the pipeline's alarms")
    check_steps(found, pipe.steps)
    return found


def port_option(flag: str, port: int | None) -> int | None:
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"{flag} {port}: must be between 1 and 65535")
    return port


def stored_run(
    store: str | None, run_id: str | None, from_python: str
) -> tuple[Store, RunInfo, Pipeline, Path]:
    """The ledger, a run in it, and its pipeline loaded from the file the run was started with."""
    from conveyor.definition.loader import load_pipeline
    from conveyor.store import open_store

    ledger = open_store(store, create=False)
    run = ledger.get_run(run_id)
    training = run.options.get("training")
    if isinstance(training, dict) and training.get("kind") != "groups":  # a search's study
        raise UsageError(
            f"run {run.id} is a study of 'conveyor train'; continue it with 'conveyor resume "
            f"{run.id}' or the same 'conveyor train' command"
        )
    if not run.pipeline_file or not run.options.get("input"):
        raise UsageError(
            f"run {run.id} was started from Python, not from a pipeline file and an input; "
            f"continue it from Python with {from_python}"
        )
    pipe, path = load_pipeline(run.pipeline_file)
    return ledger, run, pipe, path


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main() -> None:
    """Entry point of the ``conveyor`` command."""
    sys.exit(app())
