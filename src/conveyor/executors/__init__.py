"""Executors run tasks of units: a local pool of worker processes (default), thread pools for
I/O-bound steps, an inline executor for debugging, and Ray's tasks and actors
(:mod:`conveyor.executors.ray`, imported only when a run asks for it), all behind one
:class:`~conveyor.executors.base.Executor` contract. Each runs units with a
:class:`~conveyor.executors.runtime.Runtime`; the process pool and Ray share their slot
bookkeeping (:mod:`conveyor.executors.slots`)."""

from __future__ import annotations

from conveyor.executors.base import Executor, TaskResult
from conveyor.executors.inline import InlineExecutor
from conveyor.executors.process import ProcessExecutor
from conveyor.executors.thread import ThreadExecutor

__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "TaskResult", "ThreadExecutor"]
