"""What only the Ray executor does: it leaves a Ray it did not start as it found it, shuts down
the one it started, and fails a run with one clear line when Ray workers cannot load the
pipeline. What every executor does is in test_executor_contract.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import conveyor as cv

pytestmark = pytest.mark.slow

plain = cv.Pipeline("plain")


@plain.step
def echo(item: cv.Item) -> int:
    return int(item["value"])


def test_a_run_leaves_the_ray_it_was_given_connected(ray_session: Any, store_path: Path) -> None:
    report = plain.run([{"value": i} for i in range(5)], store=store_path, executor="ray")
    assert report.state is cv.RunState.COMPLETED
    assert ray_session.is_initialized()


def test_workers_that_cannot_load_the_pipeline_fail_the_run_with_one_clear_error(
    ray_session: Any, store_path: Path
) -> None:
    # An object of a module that exists only in this process, made at run time (the pipeline
    # file's source, which workers run first, does not make it): workers cannot unpickle it.
    here_only = types.ModuleType("conveyor_test_here_only")
    sys.modules[here_only.__name__] = here_only
    marker_class = type("Marker", (), {"__module__": here_only.__name__})
    here_only.Marker = marker_class  # type: ignore[attr-defined]
    marker = marker_class()
    unloadable = cv.Pipeline("unloadable")

    @unloadable.step
    def needs_marker(item: cv.Item) -> bool:
        return marker is not None

    with pytest.raises(cv.ConveyorError) as excinfo:
        unloadable.run([{"value": 1}], store=store_path, executor="ray")
    assert str(excinfo.value) == (
        "Ray workers cannot load steps needs_marker: ModuleNotFoundError: No module named "
        "'conveyor_test_here_only'; conveyor and the modules the pipeline imports must be "
        "installed on every node of the cluster"
    )
    assert excinfo.value.exit_code == 2
    from conveyor.store import open_store

    run = open_store(store_path).get_run()
    assert run.state is cv.RunState.FAILED  # resumable once the cluster is fixed


SCRIPT = """
import os
import ray
import conveyor as cv

pipe = cv.Pipeline("local")

@pipe.step
def echo(item: cv.Item) -> int:
    return int(item["value"])

report = pipe.run([{"value": i} for i in range(3)], store="ledger.db", executor="ray", workers=1)
assert report.state is cv.RunState.COMPLETED, report.state
alive = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            alive.append(entry)
print("initialized", ray.is_initialized(), "children", alive)
"""


def test_a_local_ray_started_for_a_run_is_shut_down_after_it(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "initialized False children []"


CACHED_HELPER = """
import functools
import conveyor as cv

pipe = cv.Pipeline("cached-helper")

@functools.cache
def vocabulary() -> frozenset[str]:
    return frozenset({"alpha", "beta"})

@pipe.step
def known(item: cv.Item) -> bool:
    return item["word"] in vocabulary()
"""


def test_a_pipeline_file_with_a_cached_helper_runs_on_ray(
    ray_session: Any, tmp_path: Path, store_path: Path
) -> None:
    # cloudpickle ships a functools.cache helper by reference; the workers run the pipeline
    # file's source first, so the reference resolves there too.
    from conveyor.definition.loader import load_pipeline

    (tmp_path / "cached.py").write_text(CACHED_HELPER)
    pipe, _ = load_pipeline(str(tmp_path / "cached.py"))
    report = pipe.run([{"word": "alpha"}, {"word": "gamma"}], store=store_path, executor="ray")
    assert report.state is cv.RunState.COMPLETED
