"""Executors run tasks of units: a local process pool (default), thread pools for I/O-bound
steps, an inline executor for debugging, and Ray (:mod:`conveyor.executors.ray`, imported only
when a run asks for it), all behind one :class:`~conveyor.executors.base.Executor` contract."""

from __future__ import annotations

from conveyor.executors.base import Executor, TaskResult
from conveyor.executors.inline import InlineExecutor
from conveyor.executors.process import ProcessExecutor
from conveyor.executors.thread import ThreadExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "TaskResult", "ThreadExecutor"]
