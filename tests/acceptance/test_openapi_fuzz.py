"""schemathesis against the OpenAPI document of a served sample pipeline: every operation,
valid and invalid requests, every check (no 5xx, answers match the documented schemas and
status codes, invalid input refused, valid input accepted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve import Server

RESOURCES = Path(__file__).parent.parent / "resources"


@pytest.mark.slow
def test_the_served_api_survives_schemathesis(tmp_path: Path) -> None:
    shutil.copy(RESOURCES / "served_pipeline.py", tmp_path / "p.py")
    server = Server(tmp_path)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
             "--checks", "all", "--max-examples", "25", "--seed", "1", "--no-color"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        code, err = server.stop()
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "No issues found" in result.stdout, summary
    assert code == 0, err
