"""Memory probe for ``bench/core.py``: run N no-op units and report this process's peak RSS.

Usage::

    python bench/_memory_child.py N STORE [WORKERS]

This process is the coordinator; its workers are forked children, which
``getrusage(RUSAGE_SELF)`` does not count. It prints one JSON line::

    {"units": N, "seconds": ..., "base_rss_kb": ..., "peak_rss_kb": ...,
     "ru_maxrss_kb": ..., "base_ru_maxrss_kb": ..., "state": "completed"}

``base_*`` are read after importing Conveyor, the others after the run; all are in KiB.

``peak_rss_kb`` is this process's own high-water mark (``VmHWM`` in ``/proc/self/status``).
``ru_maxrss`` is reported too, but on Linux it is not this process's alone: ``execve`` keeps
the largest RSS seen before it, so a child started by a bigger parent (``bench/core.py`` at
~45 MB) reports the parent's size until it outgrows it, which would hide any growth below
that. Where ``/proc`` is missing, ``peak_rss_kb`` falls back to ``ru_maxrss``.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import conveyor as cv

pipe = cv.Pipeline("bench-memory")


@pipe.step
def noop(item: cv.Item) -> None:
    """Do nothing: every byte the coordinator holds is the framework's."""
    return None


def high_water_kb() -> int:
    """This process's peak RSS in KiB: ``VmHWM``, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str]) -> int:
    """Run the probe and print its JSON line; returns the exit status."""
    if len(argv) not in (2, 3):
        print("usage: _memory_child.py N STORE [WORKERS]", file=sys.stderr)
        return 2
    units, store = int(argv[0]), argv[1]
    workers = int(argv[2]) if len(argv) == 3 else 2
    base = high_water_kb()
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = pipe.run(range(units), store=store, workers=workers)
    seconds = time.perf_counter() - started
    peak = high_water_kb()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    done = sum(s.counts.get("done", 0) for s in report.stats)
    print(
        json.dumps(
            {
                "units": units,
                "done": done,
                "seconds": seconds,
                "base_rss_kb": base,
                "peak_rss_kb": peak,
                "base_ru_maxrss_kb": base_maxrss,
                "ru_maxrss_kb": maxrss,
                "state": report.state.value,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
