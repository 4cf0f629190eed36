"""One backend of ``bench/peers.py``, in a fresh process: start it, run the workloads, report.

Usage::

    python bench/_peers_child.py SPEC.json

``SPEC.json`` names the backend, the workloads and their sizes (see ``peers.py``). The child
starts the backend (``ray.init``, a Dask ``LocalCluster``, a ``celery worker``, ...) and warms
it up outside any measurement, then times each workload from the first submit to the last
result collected, and shuts the backend down. It reports on stdout, one line per event, each
``@@`` followed by JSON; other lines (Ray's and Dask's chatter) are not part of the protocol:

* ``{"event": "startup", "what": ..., "seconds": ...}``: an untimed start-up step;
* ``{"event": "result", "workload": ..., "seconds": ..., "units": ..., "mode": ...}``, with
  ``unit_cpu`` (CPU seconds the units measured themselves) for the CPU workload, ``failed``
  for the example and ``computed: true`` where the time is computed rather than measured;
* ``{"event": "na", "workload": ..., "reason": ...}``: the workload (``"*"``: every workload)
  does not apply to this backend, or the backend is not available here;
* ``{"event": "error", "workload": ..., "error": ...}``: the workload failed.

Every backend runs the same functions from ``_units.py`` on the same records, with the same
number of worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _units

PREFIX = "@@"
BENCH_DIR = Path(__file__).resolve().parent
#: Files per task when multiprocessing.Pool runs the example (the batched step's batch size).
EXAMPLE_CHUNK = 32


class NotAvailable(Exception):
    """The backend cannot run this workload here; the message says why."""


@dataclass(frozen=True)
class Spec:
    """What the parent asks for: one backend, its workloads and their sizes."""

    backend: str
    workloads: list[str]
    workers: int
    noop_units: int
    cpu_units: int
    cpu_loops: int
    io_units: int
    io_sleep: float
    io_concurrency: int
    #: Units of the untimed warm-up batch, so that lazy imports and first use are not timed.
    warmup_units: int
    example_data: str | None
    scratch: str
    redis_url: str
    pg_url: str

    def records(self, workload: str) -> list[dict[str, Any]]:
        """The records of a workload's units, the same for every backend."""
        if workload == "noop":
            return [{"value": i} for i in range(self.noop_units)]
        if workload == "cpu":
            return [{"value": i, "loops": self.cpu_loops} for i in range(self.cpu_units)]
        if workload == "io":
            return [{"value": i, "sleep": self.io_sleep} for i in range(self.io_units)]
        raise ValueError(f"no records for workload {workload!r}")


@dataclass
class Measured:
    """One timed workload."""

    seconds: float
    units: int
    mode: str
    unit_cpu: float | None = None
    failed: int = 0
    computed: bool = False


def emit(message: dict[str, Any]) -> None:
    """Send one protocol line to the parent."""
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def startup(what: str, seconds: float) -> None:
    """Report an untimed start-up step."""
    emit({"event": "startup", "what": what, "seconds": seconds})


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Time the block; the elapsed seconds are in the yielded list's only element afterwards."""
    elapsed = [0.0]
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - started


def expect(count: int, wanted: int, what: str) -> None:
    """Fail the workload if not every unit's result came back."""
    if count != wanted:
        raise RuntimeError(f"{what}: {count} results collected for {wanted} units")


class Backend:
    """A backend under test. A workload it does not support raises :class:`NotAvailable`."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def start(self) -> None:
        """Start and warm up, untimed (report each step with :func:`startup`)."""

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        """Run the no-op units; collect every result."""
        raise NotAvailable("not implemented")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        """Run the CPU units; collect every unit's CPU seconds."""
        raise NotAvailable("not implemented")

    def io(self, records: list[dict[str, Any]]) -> Measured:
        """Run the sleeping units in this backend's I/O-friendly mode."""
        raise NotAvailable("not implemented")

    def example(self, data: Path) -> Measured:
        """Run the licences example over the files in ``data``."""
        raise NotAvailable("not implemented")

    def close(self) -> None:
        """Shut down and release everything this backend started."""


EXAMPLE_NA = (
    "the example is a Conveyor pipeline of 11 dependent steps; here it would be a hand-written "
    "port of its DAG (the Pool row is one)"
)

# ------------------------------------------------------------------------------------------------
# Conveyor: local processes, on Ray, or with a PostgreSQL store
# ------------------------------------------------------------------------------------------------


class Conveyor(Backend):
    """Conveyor through its public API, ``pipe.run(records, store=fresh, workers=N)``; every
    result is committed to a fresh ledger per run. ``executor`` and ``store`` select the
    variant (``executor="ray"``; ``store="postgresql"``: a fresh database per run)."""

    def __init__(self, spec: Spec, *, executor: str | None = None, store: str = "sqlite") -> None:
        super().__init__(spec)
        self.executor = executor
        self.store_kind = store
        self.runs = 0
        self.databases: list[str] = []
        self.ray_started_by_run = False

    # ledgers ------------------------------------------------------------------------------------
    def fresh_store(self) -> str:
        """A new, empty ledger: a SQLite file, or a PostgreSQL database created for it."""
        self.runs += 1
        if self.store_kind == "sqlite":
            folder = Path(self.spec.scratch) / f"ledger-{self.runs:03d}"
            folder.mkdir(parents=True)
            return str(folder / "conveyor.db")
        name = f"conveyor_peers_{os.getpid()}_{self.runs:03d}"
        self._admin(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        return f"{self.spec.pg_url.rstrip('/')}/{name}"

    def drop_store(self, store: str) -> None:
        """Delete a ledger made by :meth:`fresh_store` (keeps disk and server use small)."""
        if self.store_kind == "sqlite":
            import shutil

            shutil.rmtree(Path(store).parent, ignore_errors=True)
            return
        self.drop_database(store.rsplit("/", 1)[-1])

    def drop_database(self, name: str) -> None:
        """Drop a database this backend created, closing any connection left to it."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.databases.remove(name)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.spec.pg_url.rstrip('/')}/postgres", autocommit=True) as conn:
            conn.execute(sql)

    # start --------------------------------------------------------------------------------------
    def start(self) -> None:
        import inspect

        import core

        import conveyor as cv
        from conveyor.errors import UsageError
        from conveyor.interfaces.api import run_pipeline
        from conveyor.store import open_store

        self.core = core
        self.extra: dict[str, Any] = {}
        if self.executor is not None:
            if "executor" not in inspect.signature(run_pipeline).parameters:
                raise NotAvailable(
                    "not available: conveyor.interfaces.api.run_pipeline has no executor "
                    "parameter yet"
                )
            self.extra["executor"] = self.executor
        if self.store_kind == "postgresql":
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise NotAvailable("not available: psycopg is not installed") from None
            try:
                store = self.fresh_store()
            except Exception as exc:
                raise NotAvailable(f"no PostgreSQL server at {self.spec.pg_url}: {exc}") from exc
            try:
                open_store(store).close()
            except UsageError as exc:
                message = str(exc).replace(repr(store), "URL")
                raise NotAvailable(f"not available: {message}") from None
            finally:
                self.drop_store(store)
        if self.executor == "ray":
            # Start Ray here, untimed, like raw Ray's ray.init; the executor is expected to use
            # the Ray it finds initialised (as ray.init(address="auto") would find it).
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            with stopwatch() as took:
                import ray

                ray.init(
                    num_cpus=self.spec.workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                )
            startup("ray.init", took[0])

        self.noop_pipe = cv.Pipeline("peers-noop")
        self.noop_pipe.step(_units.noop)
        self.cpu_pipe = cv.Pipeline("peers-cpu")
        self.cpu_pipe.step(_units.burn)
        self.io_pipe = cv.Pipeline("peers-io")
        self.io_pipe.step(executor="thread", concurrency=self.spec.io_concurrency)(_units.wait)
        warmup = [{"value": -i} for i in range(1, self.spec.warmup_units + 1)]
        with stopwatch() as took:
            try:
                self.run(self.noop_pipe, warmup, "warm-up")
            except Exception:
                if self.executor != "ray":
                    raise
                # An executor that insists on starting Ray itself: let it, and say that each
                # run's time then includes Ray's start-up.
                traceback.print_exc()
                sys.modules["ray"].shutdown()
                self.ray_started_by_run = True
                self.run(self.noop_pipe, warmup, "warm-up")
        startup(f"warm-up run ({self.spec.warmup_units} no-op units)", took[0])

    def run(self, pipe: Any, source: Any, what: str, expected: int | None = None) -> Measured:
        """Time ``pipe.run`` on a fresh ledger; check every unit is done (``expected`` units, or
        all units but the example's failures); read the CPU units' own times afterwards."""
        store = self.fresh_store()
        try:
            with stopwatch() as took:
                report = pipe.run(source, store=store, workers=self.spec.workers, **self.extra)
            units = sum(s.total for s in report.stats)
            done = sum(s.counts.get("done", 0) for s in report.stats)
            if expected is not None and (done != expected or report.failed):
                raise RuntimeError(
                    f"{what}: run {report.run_id} ended {report.state.value} with "
                    f"{[s.counts for s in report.stats]}"
                )
            unit_cpu = None
            if pipe is self.cpu_pipe:
                from conveyor.interfaces.export import rows
                from conveyor.store import open_store

                ledger = open_store(store)
                try:
                    unit_cpu = sum(row["burn"] for row in rows(ledger, report.run_id, ["burn"]))
                finally:
                    ledger.close()
        finally:
            self.drop_store(store)
        return Measured(took[0], units, "", unit_cpu=unit_cpu, failed=report.failed)

    def _mode(self, text: str) -> str:
        where = f"workers={self.spec.workers}"
        if self.executor == "ray":
            where = "on Ray" + (" (started by each run, timed)" if self.ray_started_by_run else "")
        ledger = "PostgreSQL" if self.store_kind == "postgresql" else "SQLite"
        return f"pipe.run, {where}, {ledger} ledger{text}"

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        m = self.run(self.noop_pipe, records, "noop", expected=len(records))
        m.mode = self._mode("")
        return m

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        m = self.run(self.cpu_pipe, records, "cpu", expected=len(records))
        m.mode = self._mode("")
        return m

    def io(self, records: list[dict[str, Any]]) -> Measured:
        m = self.run(self.io_pipe, records, "io", expected=len(records))
        m.mode = self._mode(f"; thread step, concurrency={self.spec.io_concurrency}")
        return m

    def example(self, data: Path) -> Measured:
        pipe = self.core.load_example(self.core.EXAMPLE)
        m = self.run(pipe, str(data), "example")
        m.mode = self._mode("")
        return m

    def close(self) -> None:
        for name in list(self.databases):
            self.drop_database(name)
        if self.executor == "ray" and "ray" in sys.modules:
            sys.modules["ray"].shutdown()


# ------------------------------------------------------------------------------------------------
# Raw Ray: one ray.remote call per unit
# ------------------------------------------------------------------------------------------------


class Sleeper:
    """A threaded Ray actor for the I/O units: ``max_concurrency`` calls at once on threads."""

    def ready(self) -> bool:
        """Answer once the actor is up."""
        return True

    def wait(self, item: Mapping[str, Any]) -> None:
        """The shared I/O unit."""
        _units.wait(item)


class Ray(Backend):
    """``ray.init(num_cpus=N)``; a task per unit (``ray.remote`` of the shared functions), all
    submitted, then one ``ray.get`` of every reference."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self.ray: Any = None

    def start(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise NotAvailable("not available: ray is not installed") from None
        self.ray = ray
        with stopwatch() as took:
            ray.init(
                num_cpus=self.spec.workers,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        startup(f"ray.init(num_cpus={self.spec.workers})", took[0])
        self.tasks = {fn.__name__: ray.remote(fn) for fn in (_units.noop, _units.burn)}
        with stopwatch() as took:
            ray.get(
                [self.tasks["noop"].remote({"value": i}) for i in range(self.spec.warmup_units)]
            )
        startup(f"warm-up ({self.spec.warmup_units} no-op tasks)", took[0])

    def each(self, name: str, records: list[dict[str, Any]]) -> tuple[float, list[Any]]:
        task = self.tasks[name]
        with stopwatch() as took:
            values = self.ray.get([task.remote(record) for record in records])
        expect(len(values), len(records), name)
        return took[0], values

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        seconds, _ = self.each("noop", records)
        return Measured(seconds, len(records), "ray.remote per unit")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        seconds, values = self.each("burn", records)
        return Measured(seconds, len(records), "ray.remote per unit", unit_cpu=sum(values))

    def io(self, records: list[dict[str, Any]]) -> Measured:
        # Tasks would hold a CPU slot each while they sleep (2 at a time); Ray's way for
        # blocking I/O is a threaded actor. One per CPU, the concurrency split between them.
        per_actor = -(-self.spec.io_concurrency // self.spec.workers)
        actor_class = self.ray.remote(max_concurrency=per_actor)(Sleeper)
        with stopwatch() as took:
            actors = [actor_class.remote() for _ in range(self.spec.workers)]
            self.ray.get([actor.ready.remote() for actor in actors])
        startup(f"I/O: {len(actors)} threaded actors", took[0])
        try:
            with stopwatch() as took:
                values = self.ray.get(
                    [actors[i % len(actors)].wait.remote(r) for i, r in enumerate(records)]
                )
            expect(len(values), len(records), "io")
        finally:
            for actor in actors:
                self.ray.kill(actor)
        mode = f"{len(actors)} threaded actors x max_concurrency={per_actor}"
        return Measured(took[0], len(records), mode)

    def example(self, data: Path) -> Measured:
        raise NotAvailable(EXAMPLE_NA)

    def close(self) -> None:
        if self.ray is not None:
            self.ray.shutdown()


# ------------------------------------------------------------------------------------------------
# Dask distributed
# ------------------------------------------------------------------------------------------------


class Dask(Backend):
    """``LocalCluster(n_workers=N, threads_per_worker=1)``; ``client.map`` of the shared
    functions (a task per unit), then ``client.gather``. The I/O workload gets a cluster of the
    same N processes with threads enough for the I/O concurrency."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self.cluster: Any = None
        self.client: Any = None

    def start(self) -> None:
        try:
            import distributed
        except ImportError:
            raise NotAvailable("not available: dask[distributed] is not installed") from None
        self.distributed = distributed
        self.cluster, self.client = self.open_cluster(1, "LocalCluster")

    def open_cluster(self, threads: int, what: str) -> tuple[Any, Any]:
        with stopwatch() as took:
            cluster = self.distributed.LocalCluster(
                n_workers=self.spec.workers,
                threads_per_worker=threads,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            client = self.distributed.Client(cluster)
        startup(f"{what}(n_workers={self.spec.workers}, threads_per_worker={threads})", took[0])
        with stopwatch() as took:
            client.gather(client.map(_units.noop, range(self.spec.warmup_units), pure=False))
        startup(f"warm-up ({self.spec.warmup_units} no-op tasks)", took[0])
        return cluster, client

    def each(
        self, client: Any, fn: Callable[..., Any], records: list[dict[str, Any]]
    ) -> tuple[float, list[Any]]:
        with stopwatch() as took:
            values = client.gather(client.map(fn, records, pure=False))
        expect(len(values), len(records), fn.__name__)
        return took[0], values

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        seconds, _ = self.each(self.client, _units.noop, records)
        return Measured(seconds, len(records), "client.map (a task per unit), 1 thread/worker")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        seconds, values = self.each(self.client, _units.burn, records)
        return Measured(
            seconds, len(records), "client.map (a task per unit), 1 thread/worker", sum(values)
        )

    def io(self, records: list[dict[str, Any]]) -> Measured:
        self.stop_cluster()
        threads = -(-self.spec.io_concurrency // self.spec.workers)
        self.cluster, self.client = self.open_cluster(threads, "I/O LocalCluster")
        seconds, _ = self.each(self.client, _units.wait, records)
        mode = f"client.map, {self.spec.workers} workers x {threads} threads"
        return Measured(seconds, len(records), mode)

    def example(self, data: Path) -> Measured:
        raise NotAvailable(EXAMPLE_NA)

    def stop_cluster(self) -> None:
        if self.client is not None:
            self.client.close()
            self.cluster.close()
            self.client = self.cluster = None

    def close(self) -> None:
        self.stop_cluster()


# ------------------------------------------------------------------------------------------------
# Celery with Redis
# ------------------------------------------------------------------------------------------------


#: Prefixes of the keys Celery and kombu keep in Redis: the only keys the benchmark will flush.
OUR_REDIS_KEYS = ("celery", "_kombu.", "unacked", "peers", "celeryev")


class Celery(Backend):
    """A real ``celery worker`` process (``--pool=prefork --concurrency=N``) on ``_celery_app``,
    Redis as broker and result backend on a database of its own; a ``group`` of the units is
    sent and every result read back (``GroupResult.get``). The I/O workload gets a worker with
    ``--pool=threads`` and the I/O concurrency instead."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self.redis: Any = None
        self.owns_db = False  # True once the database is known to hold only Celery's keys
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        os.environ["PEERS_REDIS_URL"] = self.spec.redis_url
        try:
            import _celery_app
            import redis
        except ImportError as exc:
            raise NotAvailable(f"not available: {exc.name} is not installed") from None
        self.redis = redis.Redis.from_url(self.spec.redis_url)
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            raise NotAvailable(f"no Redis at {self.spec.redis_url}: {exc}") from None
        strangers = [
            key
            for key in self.redis.scan_iter(count=1000)
            if not key.decode(errors="replace").startswith(OUR_REDIS_KEYS)
        ]
        if strangers:
            raise NotAvailable(
                f"Redis database {self.spec.redis_url} holds keys that are not Celery's "
                f"(e.g. {strangers[0]!r}); pass --redis-url with a database of its own"
            )
        self.redis.flushdb()  # our own database only: leftovers of an interrupted run
        self.owns_db = True
        self.capp = _celery_app
        self.start_worker("prefork", self.spec.workers, _celery_app.QUEUE)
        with stopwatch() as took:
            self.each(_celery_app.noop, [{"value": i} for i in range(self.spec.warmup_units)])
        startup(f"warm-up ({self.spec.warmup_units} no-op tasks)", took[0])

    def start_worker(self, pool: str, concurrency: int, queue: str) -> None:
        """Start ``celery worker`` and wait until it answers a ping."""
        name = f"peers-{pool}-{os.getpid()}@localhost"
        log = open(Path(self.spec.scratch) / f"celery-{pool}.log", "wb")  # noqa: SIM115
        command = [
            sys.executable, "-m", "celery", "-A", "_celery_app", "worker",
            f"--pool={pool}", f"--concurrency={concurrency}", "-Q", queue, "-n", name,
            "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with stopwatch() as took:
            # Its own session: its pool processes can be told apart from everyone else's.
            self.worker = subprocess.Popen(
                command, cwd=BENCH_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()
            deadline = time.monotonic() + 120
            while not self.capp.app.control.ping(destination=[name], timeout=0.5):
                if self.worker.poll() is not None:
                    raise RuntimeError(f"celery worker exited with {self.worker.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("celery worker did not answer a ping within 120 s")
        startup(f"celery worker --pool={pool} --concurrency={concurrency}", took[0])

    def stop_worker(self) -> None:
        """Warm shutdown (SIGTERM to the worker's pid); its pool processes go with it."""
        worker, self.worker = self.worker, None
        if worker is None or worker.poll() is not None:
            return
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)  # the session we started, nothing else
            worker.wait()

    def each(self, task: Any, records: list[dict[str, Any]]) -> tuple[float, list[Any]]:
        from celery import group

        with stopwatch() as took:
            values = group(task.s(record) for record in records).apply_async().get(timeout=3600)
        expect(len(values), len(records), task.name)
        return took[0], values

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        seconds, _ = self.each(self.capp.noop, records)
        return Measured(seconds, len(records), f"prefork worker, concurrency={self.spec.workers}")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        seconds, values = self.each(self.capp.burn, records)
        mode = f"prefork worker, concurrency={self.spec.workers}"
        return Measured(seconds, len(records), mode, unit_cpu=sum(values))

    def io(self, records: list[dict[str, Any]]) -> Measured:
        self.stop_worker()
        self.start_worker("threads", self.spec.io_concurrency, self.capp.IO_QUEUE)
        seconds, _ = self.each(self.capp.wait, records)
        return Measured(
            seconds, len(records), f"threads worker, concurrency={self.spec.io_concurrency}"
        )

    def example(self, data: Path) -> Measured:
        raise NotAvailable(EXAMPLE_NA)

    def close(self) -> None:
        self.stop_worker()
        if self.redis is not None:
            try:
                if self.owns_db:
                    self.redis.flushdb()
            finally:
                self.redis.close()


# ------------------------------------------------------------------------------------------------
# multiprocessing.Pool and the sequential loop
# ------------------------------------------------------------------------------------------------

#: The example's pipeline and resources in a Pool worker (set by :func:`_example_worker_init`).
_EXAMPLE: dict[str, Any] = {}


def _example_worker_init(pipe: Any, data: Path) -> None:
    """Pool initializer: the example's resources, built once per worker process."""
    import core

    resource = core.resource_builder(pipe)
    for name in pipe.resources:
        resource(name)
    _EXAMPLE.update(pipe=pipe, resource=resource, data=data)


def _example_chunk(paths: Sequence[str]) -> tuple[list[dict[str, Any]], int]:
    """Every step of the example for a chunk of files; returns their outputs and failures."""
    import core

    pipe, data = _EXAMPLE["pipe"], _EXAMPLE["data"]
    items = core.file_items(data, [Path(p) for p in paths])
    outputs, failures = core.run_steps(pipe, items, _EXAMPLE["resource"])
    rows = [
        {step: None if values[i] is core.FAILED else values[i] for step, values in outputs.items()}
        for i in range(len(items))
    ]
    return rows, failures


class Pool(Backend):
    """``multiprocessing.Pool(N).map`` of the shared functions (its default chunking), timed
    from creating the pool to its exit; a ``ThreadPool`` of the I/O concurrency for the I/O
    units; for the example, each task runs every step for a chunk of files."""

    def start(self) -> None:
        import multiprocessing
        import multiprocessing.pool

        self.ctx = multiprocessing.get_context("fork")
        self.thread_pool = multiprocessing.pool.ThreadPool

    def each(
        self, fn: Callable[..., Any], records: list[dict[str, Any]]
    ) -> tuple[float, list[Any]]:
        with stopwatch() as took, self.ctx.Pool(self.spec.workers) as pool:
            values = pool.map(fn, records)
        expect(len(values), len(records), fn.__name__)
        return took[0], values

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        seconds, _ = self.each(_units.noop, records)
        return Measured(seconds, len(records), f"Pool({self.spec.workers}).map")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        seconds, values = self.each(_units.burn, records)
        return Measured(seconds, len(records), f"Pool({self.spec.workers}).map", sum(values))

    def io(self, records: list[dict[str, Any]]) -> Measured:
        c = self.spec.io_concurrency
        with stopwatch() as took, self.thread_pool(c) as pool:
            values = pool.map(_units.wait, records)
        expect(len(values), len(records), "io")
        return Measured(took[0], len(records), f"ThreadPool({c}).map")

    def example(self, data: Path) -> Measured:
        import core

        pipe = core.load_example(core.EXAMPLE)
        files = [str(path) for path in core.input_files(data)]
        chunks = [files[i : i + EXAMPLE_CHUNK] for i in range(0, len(files), EXAMPLE_CHUNK)]
        # Forked workers inherit the loaded pipeline (initargs are not pickled under fork).
        with (
            stopwatch() as took,
            self.ctx.Pool(self.spec.workers, _example_worker_init, (pipe, data)) as pool,
        ):
            done = pool.map(_example_chunk, chunks, chunksize=1)
        rows = [row for chunk_rows, _ in done for row in chunk_rows]
        expect(len(rows), len(files), "example")
        mode = f"Pool({self.spec.workers}).map, every step for {EXAMPLE_CHUNK} files per task"
        units = len(files) * len(pipe.graph.order)
        return Measured(took[0], units, mode, failed=sum(f for _, f in done))


class Sequential(Backend):
    """A plain loop in this process over the same functions; the I/O workload is computed
    (units x sleep), not slept through."""

    def noop(self, records: list[dict[str, Any]]) -> Measured:
        with stopwatch() as took:
            values = [_units.noop(record) for record in records]
        expect(len(values), len(records), "noop")
        return Measured(took[0], len(records), "for loop")

    def cpu(self, records: list[dict[str, Any]]) -> Measured:
        with stopwatch() as took:
            values = [_units.burn(record) for record in records]
        return Measured(took[0], len(records), "for loop", unit_cpu=sum(values))

    def io(self, records: list[dict[str, Any]]) -> Measured:
        seconds = sum(record["sleep"] for record in records)
        return Measured(seconds, len(records), "for loop (computed)", computed=True)

    def example(self, data: Path) -> Measured:
        import core

        pipe = core.load_example(core.EXAMPLE)
        result = core.sequential_run(pipe, data)
        units = result["items"] * len(pipe.graph.order)
        return Measured(
            result["seconds"], units, "bench/core.py's step loop", failed=result["failures"]
        )


BACKENDS: dict[str, Callable[[Spec], Backend]] = {
    "conveyor": Conveyor,
    "conveyor-ray": lambda spec: Conveyor(spec, executor="ray"),
    "conveyor-pg": lambda spec: Conveyor(spec, store="postgresql"),
    "ray": Ray,
    "dask": Dask,
    "celery": Celery,
    "pool": Pool,
    "sequential": Sequential,
}


def run(spec: Spec) -> int:
    """Start the backend, run each workload, shut down; returns the exit status."""
    backend = BACKENDS[spec.backend](spec)
    try:
        try:
            backend.start()
        except NotAvailable as exc:
            emit({"event": "na", "workload": "*", "reason": str(exc)})
            return 0
        for workload in spec.workloads:
            try:
                if workload == "example":
                    if spec.example_data is None:
                        raise NotAvailable("the licence texts could not be prepared")
                    measured = backend.example(Path(spec.example_data))
                else:
                    measured = getattr(backend, workload)(spec.records(workload))
            except NotAvailable as exc:
                emit({"event": "na", "workload": workload, "reason": str(exc)})
                continue
            except Exception as exc:
                traceback.print_exc()
                emit(
                    {
                        "event": "error",
                        "workload": workload,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                )
                continue
            emit({"event": "result", "workload": workload, **vars(measured)})
    finally:
        backend.close()
    return 0


def main(argv: list[str]) -> int:
    """Read the spec and run it; SIGTERM from the parent shuts the backend down cleanly."""
    if len(argv) != 1:
        print("usage: _peers_child.py SPEC.json", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spec = Spec(**json.loads(Path(argv[0]).read_text()))
    return run(spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
