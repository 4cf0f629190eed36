"""Ray peer for ``bench/core.py``: a long-lived child process that runs no-op Ray tasks on request.

Ray lives in its own process so that its threads and helper processes never share an address
space with the Conveyor coordinator, which forks its workers. Protocol (one line each way):

* on start: ``ray.init(num_cpus=N)``, a warm-up batch so the worker processes exist, then
  ``@@{"ready": true, "init_seconds": ...}`` (init and warm-up are not part of any measurement);
* for each line ``N`` read from stdin: submit N tasks (one ``ray.remote`` call per unit, the
  same ``{"value": i}`` records Conveyor gets), ``ray.get`` them all, and answer
  ``@@{"units": N, "seconds": ...}`` with the time from the first submit to the last result;
* ``quit`` (or end of input): ``ray.shutdown()`` and exit.

Lines that do not start with ``@@`` are Ray's own chatter and are ignored by the parent.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

PREFIX = "@@"
WARMUP_TASKS = 200


def emit(message: dict[str, Any]) -> None:
    """Send one protocol line to the parent."""
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Serve measurement requests until told to quit; returns the exit status."""
    cpus = int(argv[0]) if argv else 2
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    import ray

    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
    )

    @ray.remote
    def noop(item: dict[str, Any]) -> None:
        return None

    ray.get([noop.remote({"value": i}) for i in range(WARMUP_TASKS)])
    emit({"ready": True, "init_seconds": time.perf_counter() - started, "ray": ray.__version__})
    try:
        for line in sys.stdin:
            command = line.strip()
            if not command:
                continue
            if command == "quit":
                break
            units = int(command)
            records = [{"value": i} for i in range(units)]
            t0 = time.perf_counter()
            ray.get([noop.remote(record) for record in records])
            emit({"units": units, "seconds": time.perf_counter() - t0})
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
