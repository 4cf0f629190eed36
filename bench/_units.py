"""The units of work every benchmark and every peer runs: the same functions for Conveyor's steps,
Ray tasks, Dask tasks, Celery tasks, ``multiprocessing.Pool`` and the sequential loops.

Standard library only, so that Ray, Dask and Celery workers import nothing else to run them (they
find this module through ``PYTHONPATH``, which ``bench/peers.py`` points at ``bench/``). A unit
takes one record, a mapping: a plain dict for the peers, a :class:`conveyor.Item` of the same
fields for Conveyor, which reads the fields the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def spin(loops: int) -> int:
    """Pure-Python busy loop: CPU work that holds the GIL and touches no memory."""
    x = 0
    for i in range(loops):
        x ^= i
    return x


def noop(item: Mapping[str, Any]) -> None:
    """Do nothing: the unit's cost is all the framework's."""
    return None


def burn(item: Mapping[str, Any]) -> float:
    """Spin ``item["loops"]`` times (about 20 ms of CPU); returns the CPU seconds it took, so that
    every backend's ideal wall time (CPU seconds / workers) comes from its own units."""
    started = time.process_time()
    spin(item["loops"])
    return time.process_time() - started


def wait(item: Mapping[str, Any]) -> None:
    """An I/O-bound unit: sleep ``item["sleep"]`` seconds (a remote call) without using the CPU."""
    time.sleep(item["sleep"])
