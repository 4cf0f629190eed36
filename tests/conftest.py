"""Shared fixtures: a ledger file per test and a helper to run the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RESOURCES = Path(__file__).parent / "resources"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh SQLite ledger path in this test's temporary folder."""
    return tmp_path / "ledger" / "conveyor.db"


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``conveyor ARGS`` in ``tmp_path`` as a real subprocess and return the result."""

    def run(
        *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
