"""The command-line interface, one module per command group."""

from __future__ import annotations

from conveyor.interfaces.cli.main import app, main

__all__ = ["app", "main"]
