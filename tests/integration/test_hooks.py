"""The hooks of a run: told of its life in order, and a failing hook never stops it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import conveyor as cv
from conveyor.core.units import RunState, StepStats, UnitState
from conveyor.interfaces.api import run_pipeline
from conveyor.scheduling.hooks import Hooks, RunContext
from conveyor.store import open_store

pipe = cv.Pipeline("hooked")


@pipe.step
def double(item: cv.Item) -> int:
    if item["n"] == 3:
        raise ValueError("three")
    return 2 * int(item["n"])


class Recorder(Hooks):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.advanced: dict[UnitState, int] = {}

    def run_started(self, run: RunContext) -> None:
        self.calls.append(f"started {run.pipeline} {run.plan.items}")

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        self.advanced[state] = self.advanced.get(state, 0) + count

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        self.calls.append(f"finished {state.value}")

    def run_stopped(self, run: RunContext) -> None:
        self.calls.append("stopped")


class Broken(Hooks):
    def run_started(self, run: RunContext) -> None:
        raise RuntimeError("broken start")

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        raise RuntimeError("broken advance")

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        raise RuntimeError("broken finish")

    def run_stopped(self, run: RunContext) -> None:
        raise RuntimeError("broken stop")


def test_hooks_are_told_in_order(store_path: Path) -> None:
    recorder = Recorder()
    report = run_pipeline(pipe, [{"n": n} for n in range(6)], store=store_path, workers=0,
                          hooks=[recorder])  # fmt: skip
    assert report.state is RunState.COMPLETED_WITH_ERRORS
    assert recorder.calls == ["started hooked 6", "finished completed_with_errors", "stopped"]
    assert recorder.advanced == {UnitState.DONE: 5, UnitState.DEAD: 1}


def test_a_failing_hook_is_logged_and_the_run_goes_on(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    with caplog.at_level(logging.ERROR, logger="conveyor"):
        report = run_pipeline(pipe, [{"n": n} for n in range(6)], store=store_path, workers=0,
                              hooks=[Broken(), recorder])  # fmt: skip
    assert report.state is RunState.COMPLETED_WITH_ERRORS and report.failed == 1
    assert recorder.calls == ["started hooked 6", "finished completed_with_errors", "stopped"]
    failed = [r.getMessage() for r in caplog.records if r.getMessage() == "hook.failed"]
    assert len(failed) >= 4  # each of the four hooks, once per call


def test_an_interrupted_run_still_stops_its_hooks(store_path: Path) -> None:
    interrupted = cv.Pipeline("interrupted")

    @interrupted.step
    def stop(item: cv.Item) -> int:
        raise KeyboardInterrupt  # Ctrl-C while a unit runs inline

    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(interrupted, [{"n": 1}], store=store_path, workers=0, hooks=[recorder])
    assert recorder.calls == ["started interrupted 1", "stopped"]
    ledger = open_store(store_path)
    assert ledger.list_runs(1)[0].state is RunState.INTERRUPTED
    ledger.close()
