"""The options and arguments that several ``conveyor`` commands share; each also reads
``CONVEYOR_<OPTION>`` from the environment."""

from __future__ import annotations

from typing import Annotated

import typer

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="CONVEYOR_STORE",
        help="Ledger: a SQLite file path [default: .conveyor/conveyor.db] or a "
        "postgresql://USER@HOST/DB URL.",
    ),
]
AlarmsOpt = Annotated[
    str | None,
    typer.Option(
        "--alarms",
        envvar="CONVEYOR_ALARMS",
        help="A YAML file of alarm rules to evaluate as the run goes (beside the pipeline's).",
    ),
]
NotifyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--notify",
        envvar="CONVEYOR_NOTIFY",
        help="Webhook URL to POST events to (run finished, failure rate, dead units, alarms).",
    ),
]
PipelineArg = Annotated[str, typer.Argument(help="The pipeline file (FILE.py or FILE.py:NAME).")]
RunArg = Annotated[str | None, typer.Argument(help="Run id or prefix (default: latest).")]
ArtifactsOpt = Annotated[
    str | None,
    typer.Option("--artifacts", envvar="CONVEYOR_ARTIFACTS",
                 help="Artifact store: a folder or fsspec URL [default: .conveyor/artifacts]."),
]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        envvar="CONVEYOR_WORKERS",
        help="Worker processes (default: one per core); 0 runs inline.",
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        envvar="CONVEYOR_EXECUTOR",
        help="Where process steps run: local (a process pool on this machine) or ray "
        "[default: local; resume: as the run was started].",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        envvar="CONVEYOR_RAY_ADDRESS",
        help="With --executor ray: the cluster to use (auto, HOST:PORT or ray://HOST:PORT); "
        "without it a local Ray is started for the run.",
    ),
]
ProgressOpt = Annotated[
    bool,
    typer.Option(
        "--progress/--no-progress", envvar="CONVEYOR_PROGRESS", help="Show live progress bars."
    ),
]
HostOpt = Annotated[str, typer.Option("--host", envvar="CONVEYOR_HOST", help="Address to bind.")]
