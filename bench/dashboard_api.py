"""Response times of the dashboard's API on a run of 100,000 units (50,000 items, two steps,
2% of the first step dead), written through the Store API as a run would write it.

    python bench/dashboard_api.py [--store PATH_OR_URL] [--items 50000] [--repeat 7]

Prints the median and the slowest of ``--repeat`` calls of each endpoint, over real HTTP to a
uvicorn on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn

from conveyor.core.units import ErrorInfo, Outcome, UnitState
from conveyor.interfaces.http.app import create_dashboard_app
from conveyor.store import Store, open_store

BATCH = 5000


def build(store: Store, run_id: str, items: int) -> None:
    """A finished run of ``items`` items over steps a and b; every 50th a unit is dead (its b
    unit skipped), with one of three error messages."""
    rng = random.Random(7)
    store.create_run(run_id, pipeline="bench", pipeline_file=None, source="bench",
                     steps=["a", "b"], options={})  # fmt: skip
    for start in range(0, items, BATCH):
        idxs = range(start, min(items, start + BATCH))
        store.add_items(run_id, [(i, f"item-{i:06d}", "record", f"k{i}",
                                  b"\x80\x04N.", None) for i in idxs])  # fmt: skip
        store.add_units(run_id, [(i, "a", f"{run_id}a{i}", UnitState.READY, 0, None)
                                 for i in idxs]
                        + [(i, "b", f"{run_id}b{i}", UnitState.PENDING, 1, None)
                           for i in idxs])  # fmt: skip
    store.mark_planned(run_id)
    for step in ("a", "b"):
        while claims := store.claim(run_id, [step], BATCH, owner="bench", lease=600):
            done, failed = [], []
            for c in claims:
                took = rng.lognormvariate(-4, 0.6)
                if step == "a" and c.item_idx % 50 == 0:
                    error = ErrorInfo("ValueError", f"bad record {c.item_idx % 3}", "Traceback")
                    out = Outcome(c.unit_id, c.fence, None, error, time.time(), took)
                    failed.append((c, out, UnitState.DEAD, None, ("b",), "give up"))
                else:
                    out = Outcome(c.unit_id, c.fence, b"v", None, time.time(), took)
                    done.append((c, out, ("b",) if step == "a" else ()))
            store.commit(run_id, done, failed)


def serve(store: str) -> tuple[uvicorn.Server, str]:
    """The dashboard over ``store`` on a free port of 127.0.0.1, in a thread."""
    server = uvicorn.Server(uvicorn.Config(create_dashboard_app(store), host="127.0.0.1",
                                           port=0, log_level="warning"))  # fmt: skip
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/dashboard/api"


def endpoints(run_id: str, unit: int) -> dict[str, str]:
    """Every read endpoint of the dashboard, as the run page calls them."""
    return {
        "runs": "/runs?limit=50",
        "run summary (step stats, p50/p95)": f"/runs/{run_id}",
        "throughput (60 buckets)": f"/runs/{run_id}/throughput?buckets=60",
        "error groups": f"/runs/{run_id}/errors?limit=50&samples=3",
        "dead units, first page": f"/runs/{run_id}/dead?limit=25",
        "dead units, last page": f"/runs/{run_id}/dead?offset=975&limit=25",
        "unit detail": f"/units/{unit}",
        "alarms": f"/runs/{run_id}/alarms",
    }


def time_calls(base: str, paths: dict[str, str], repeat: int) -> dict[str, tuple[float, float]]:
    """(median, max) seconds of ``repeat`` GETs of each path (after one warm-up call)."""
    found = {}
    for name, path in paths.items():
        took = []
        for i in range(repeat + 1):
            started = time.perf_counter()
            with urllib.request.urlopen(base + path, timeout=60) as answer:
                json.loads(answer.read())
            if i:
                took.append(time.perf_counter() - started)
        found[name] = (statistics.median(took), max(took))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="ledger (default: a SQLite file in a temporary folder)")
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        location = args.store or str(Path(tmp) / "ledger.db")
        store = open_store(location)
        run_id = f"bench-{int(time.time())}"
        started = time.perf_counter()
        build(store, run_id, args.items)
        unit = store.dead_units(run_id, limit=1)[0]["unit"]
        store.close()
        print(f"{2 * args.items:,} units written in {time.perf_counter() - started:.1f}s "
              f"to {location.split('@')[-1]}", file=sys.stderr)  # fmt: skip
        server, base = serve(location)
        for name, (median, worst) in time_calls(base, endpoints(run_id, unit), args.repeat).items():
            print(f"| {name} | {1000 * median:.1f} ms | {1000 * worst:.1f} ms |")
        server.should_exit = True


if __name__ == "__main__":
    main()
