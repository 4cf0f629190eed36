"""``python -m conveyor`` runs the command line."""

from __future__ import annotations

from conveyor.interfaces.cli import main

main()
