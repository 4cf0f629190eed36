"""Shared fixtures: a ledger file per test, a helper to run the CLI as a subprocess, and one
local Ray for the whole session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    """One local Ray with two CPUs, started the first time a test needs it and shut down at the
    end of the session; Conveyor's Ray executor uses it rather than starting its own. Without
    Ray installed the test is skipped, except in CI, where it fails."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Ray is not installed (pip install -e '.[dev]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
