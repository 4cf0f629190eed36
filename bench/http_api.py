"""Conveyor's HTTP benchmark: ``POST /steps/{step}`` of ``conveyor serve`` against a bare
FastAPI endpoint doing the same work, and the server's cold start and warm per-request latency.

Usage::

    python bench/http_api.py [--quick] [--json OUT] [--only SECTION ...]

It needs ``wrk`` (the HTTP load generator; on Debian ``apt-get install -y wrk``); without it
the throughput section fails with that hint and the cold-start section still runs. Every
server is a subprocess of this script on 127.0.0.1, started as a user starts it and stopped
with SIGTERM to its own pid (its exit status must be 0). Conveyor's is ``python -m conveyor
serve PIPE.py --port P -w 1 --store FRESH``; the bare one is ``python -m uvicorn
_http_bare:app --app-dir bench/ --host 127.0.0.1 --port P --log-level warning``: one process,
the uvicorn settings ``conveyor serve`` uses, and the same event loop and HTTP parser (uvicorn
picks uvloop and httptools when they are installed; the versions in use are printed).

Sections:

1. Throughput: the pipeline ``x(item) -> int(item["x"])``, ``double(x) -> 2 * x``. With both
   servers up, ``wrk -t1 -c16 -d10s --latency`` (``--quick``: ``-d3s``) POSTs ``{"x": N}``
   to each target in turn, the order rotated between 3 rounds (``--quick``: 1), after an
   untimed warm-up of each. N is new for every request (a Lua counter), so ``/invoke`` never
   answers from the cache. The targets:

   - ``conveyor POST /steps/double``: the step alone, as the issue's target measures it;
   - ``bare def POST /double``: FastAPI, a pydantic body model ``{x: int}``, a plain ``def``
     returning ``{"output": 2 * x}``. FastAPI runs a ``def`` handler on its thread pool, as
     Conveyor runs a step (``asyncio.to_thread``): the same work, done the same way. This is
     the reference of the target, conveyor/bare >= 0.8x, on the medians of requests/s;
   - ``bare async def POST /double-async``: the same as ``async def`` on the event loop
     (FastAPI's fastest; a blocking step could not run there), for information;
   - ``conveyor POST /invoke``: the whole pipeline on one item through the ledger (written,
     scheduled on the worker process, committed, polled), for information.

   Reported per target: the median requests/s, wrk's p50 and p99 latency (medians over the
   rounds), and the server's CPU time per request (its process and children, from ``/proc``).
   Any non-2xx answer or socket error reported by wrk fails the section.
2. Cold start: a pipeline whose resource sleeps 1.0 s and returns a small dict (a model
   load) and whose step ``scored(item, model)`` uses it; every build appends the building
   process's pid to a file. Over 3 starts (``--quick``: 1), each with a fresh ledger:
   process start -> the first HTTP answer, and -> ``/readyz`` 200 (polled every 10 ms; it
   must answer 503 "loading" before that), with the ``cold_start_seconds`` that ``/readyz``
   reports. Then, on one keep-alive connection (``http.client``): the first ``POST
   /steps/scored`` and the first ``POST /invoke`` after ready, then 200 (``--quick``: 50)
   sequential requests of each: p50 and p99 in ms, pooled over the starts. Targets: the
   resource built exactly once per start, in the server before it was ready (the worker that
   ``/invoke`` uses inherits it), and the first request well below the load time (no load on
   the first request); its ratio to the warm p50 is printed.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import _common
import _http_bare
from _common import Scratch, load_note, median, say
from rich.markup import escape

BENCH_DIR = Path(__file__).resolve().parent
HOST = "127.0.0.1"
#: Conveyor/bare requests/s target of the throughput section.
RATIO_TARGET = 0.8
#: How long a server may take to answer ``/readyz`` 200 (imports are slow on a busy machine).
READY_TIMEOUT = 90.0
#: How long a server may take to exit after SIGTERM.
STOP_TIMEOUT = 60.0
#: How often the cold-start section polls ``/readyz``.
READY_POLL = 0.01
#: Pause between two wrk runs, so that work left over from one does not land in the next.
SETTLE = 0.5
SERVER_ENV = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}

# ------------------------------------------------------------------------------------------------
# Configuration and results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """Sizes; ``--quick`` shrinks them for a smoke run."""

    quick: bool
    seconds: int
    rounds: int
    warmup: int
    starts: int
    requests: int
    wrk_threads: int = 1
    connections: int = 16
    load_seconds: float = 1.0

    @classmethod
    def make(cls, quick: bool) -> Config:
        """The full configuration, or the quick one."""
        if quick:
            return cls(quick=True, seconds=3, rounds=1, warmup=1, starts=1, requests=50)
        return cls(quick=False, seconds=10, rounds=3, warmup=2, starts=3, requests=200)


Row = _common.MetricRow


Results = _common.Results[Config, Row]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of a non-empty sequence, interpolated between neighbours."""
    if len(values) == 1:
        return float(values[0])
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return float(cuts[round(q * 1000) - 1])


def ms(seconds: float) -> str:
    """Seconds as milliseconds for a table cell."""
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def versions() -> dict[str, str]:
    """The versions of the HTTP stack both servers run on."""
    found = {}
    for name in ("fastapi", "starlette", "uvicorn", "pydantic", "uvloop", "httptools", "h11"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "-"
    return found


def stack_note(stack: dict[str, str]) -> str:
    """uvicorn's event loop and HTTP parser, as its ``auto`` settings pick them."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return (
        f"FastAPI {stack['fastapi']}, Starlette {stack['starlette']}, uvicorn {stack['uvicorn']} "
        f"({loop} loop, {parser} parser), pydantic {stack['pydantic']}"
    )


# ------------------------------------------------------------------------------------------------
# Servers as subprocesses
# ------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, total = {pid}, 0.0
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    for member in family:
        total += used.get(member, 0.0)
    return total


class Server:
    """A server process this benchmark started; :meth:`stop` sends SIGTERM to its pid only."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        cwd: Path,
        port: int,
        *,
        signalled_when: str | None = None,
    ) -> None:
        self.name = name
        self.port = port
        #: A line whose presence in the output makes death by the re-raised SIGTERM a clean
        #: stop (uvicorn's own server); None: only status 0 is.
        self.signalled_when = signalled_when
        self.log_path = cwd / f"{name}.log"
        self._log: IO[str] = self.log_path.open("w")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=SERVER_ENV,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.proc.pid

    def tail(self, lines: int = 12) -> str:
        """The end of the server's output, for an error message."""
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text) or "(no output)"

    def alive(self) -> None:
        """Raise if the server has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def wait_ready(self, path: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``GET path`` until it answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive()
            try:
                if get_status(self.port, path)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} was not ready within {timeout:g} s:\n{self.tail()}")

    def stop(self) -> int:
        """SIGTERM, wait for the exit and return its status; raise unless it is 0 (or the
        re-raised SIGTERM after a completed shutdown, with ``signalled_when``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(
                f"{self.name} did not exit within {STOP_TIMEOUT:g} s of SIGTERM:\n{self.tail()}"
            ) from None
        finally:
            self._log.close()
        log = self.log_path.read_text(errors="replace")
        if (
            code == -signal.SIGTERM
            and self.signalled_when is not None
            and self.signalled_when in log
        ):
            return code
        if code != 0:
            raise RuntimeError(
                f"{self.name} exited with status {code} after SIGTERM:\n{self.tail()}"
            )
        return code

    def close(self) -> None:
        """Stop the server if it still runs, whatever happened (cleanup after a failure)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def conveyor_server(folder: Path, pipeline: Path, port: int) -> Server:
    """``conveyor serve`` on one worker process, with a fresh ledger in ``folder``."""
    command = [sys.executable, "-m", "conveyor", "serve", str(pipeline), "--host", HOST,
               "--port", str(port), "-w", "1", "--store", str(folder / "ledger.db")]  # fmt: skip
    return Server("conveyor", command, folder, port)


def bare_server(folder: Path, port: int) -> Server:
    """The bare FastAPI app of ``_http_bare.py`` under uvicorn, as ``conveyor serve`` runs."""
    command = [sys.executable, "-m", "uvicorn", "_http_bare:app", "--app-dir", str(BENCH_DIR),
               "--host", HOST, "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return Server("bare", command, folder, port, signalled_when=_http_bare.SHUTDOWN_LINE)


def get_status(port: int, path: str) -> tuple[int, Any]:
    """``GET path`` on a new connection: (status, the JSON body or None)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, None


def post(conn: http.client.HTTPConnection, path: str, body: Any) -> tuple[float, int, Any]:
    """``POST path`` with a JSON body on a kept-alive connection: (seconds, status, JSON)."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    started = time.perf_counter()
    conn.request("POST", path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    seconds = time.perf_counter() - started
    return seconds, response.status, json.loads(raw or b"null")


def expect(what: str, status: int, body: Any, check: Callable[[Any], bool]) -> None:
    """Raise unless the answer is a 200 whose body passes ``check``."""
    if status != 200 or not check(body):
        raise RuntimeError(f"{what}: unexpected answer {status} {body!r}")


# ------------------------------------------------------------------------------------------------
# wrk
# ------------------------------------------------------------------------------------------------

#: wrk's script: POST ``{"x": N}`` with N new for every request (a counter from the base
#: passed after ``--``, offset per wrk thread), and print wrk's own statistics as one JSON line.
WRK_SCRIPT = """\
local base, counter = 0, 0
local threads = 0

function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

function init(args)
  base = (tonumber(args[1]) or 0) + tid * 100000000
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format('{"x":%d}', base + counter))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,'
    .. '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,'
    .. '"mean_us":%.1f,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class LoadRun:
    """One wrk run against one target."""

    target: str
    round: int
    requests: int
    seconds: float
    rps: float
    p50: float
    p90: float
    p99: float
    mean: float
    max: float
    server_cpu_seconds: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_per_request(self) -> float:
        """Server CPU seconds per request answered."""
        return self.server_cpu_seconds / max(1, self.requests)


def wrk(cfg: Config, script: Path, url: str, seconds: int, base: int) -> tuple[dict[str, Any], str]:
    """Run wrk on ``url`` for ``seconds``; its statistics and its text output. Raises when wrk
    fails or reports socket errors or non-2xx answers."""
    command = ["wrk", f"-t{cfg.wrk_threads}", f"-c{cfg.connections}", f"-d{seconds}s",
               "--latency", "--timeout", "10s", "-s", str(script), url,
               "--", str(base)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    text = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}) on {url}:\n{text.strip()}")
    stats: dict[str, Any] = json.loads(lines[-1].removeprefix("WRK_JSON "))
    errors = {k: int(stats[k]) for k in ("connect", "read", "write", "timeout", "status")}
    # Both wrk's own statistics and its text: either alone would do, neither may be ignored.
    printed = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if any(errors.values()) or printed or "Socket errors" in text:
        raise RuntimeError(
            f"wrk saw failed requests on {url}: {errors} (status = non-2xx answers)\n"
            + "\n".join(line for line in text.splitlines() if not line.startswith("WRK_JSON"))
        )
    if not stats["requests"]:
        raise RuntimeError(f"wrk sent no request to {url}:\n{text.strip()}")
    return stats, text


def load_run(
    cfg: Config, script: Path, target: Target, round_: int, base: int, seconds: int
) -> LoadRun:
    """One timed wrk run on ``target``, with its server's CPU time over it."""
    cpu_before = cpu_seconds(target.server.pid)
    stats, _ = wrk(cfg, script, target.url, seconds, base)
    cpu = cpu_seconds(target.server.pid) - cpu_before
    target.server.alive()
    wall = stats["duration_us"] / 1e6
    return LoadRun(
        target=target.key,
        round=round_,
        requests=int(stats["requests"]),
        seconds=wall,
        rps=stats["requests"] / wall,
        p50=stats["p50_us"] / 1e6,
        p90=stats["p90_us"] / 1e6,
        p99=stats["p99_us"] / 1e6,
        mean=stats["mean_us"] / 1e6,
        max=stats["max_us"] / 1e6,
        server_cpu_seconds=cpu,
    )


# ------------------------------------------------------------------------------------------------
# 1. Throughput
# ------------------------------------------------------------------------------------------------

THROUGHPUT_PIPELINE = '''\
import conveyor as cv

pipe = cv.Pipeline("bench-http")


@pipe.step
def x(item: cv.Item) -> int:
    """The item's number."""
    return int(item["x"])


@pipe.step
def double(x: int) -> int:
    """Twice it: the trivial step that bench/http_api.py loads."""
    return 2 * x
'''


@dataclass
class Target:
    """One endpoint under load: how to name it, where it is, how to check one answer."""

    key: str
    label: str
    server: Server
    path: str
    check: Callable[[Any], bool]

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return f"http://{HOST}:{self.server.port}{self.path}"


def bench_throughput(cfg: Config, scratch: Scratch, results: Results) -> None:
    """``POST /steps/double`` against a bare FastAPI endpoint (and ``/invoke``) under wrk."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install -y wrk)")
    stack = versions()
    say(
        f"\n[bold]1. Throughput[/bold]: wrk -t{cfg.wrk_threads} -c{cfg.connections} "
        f"-d{cfg.seconds}s, {cfg.rounds} round(s) alternating the targets, warm-up "
        f"{cfg.warmup} s each; both servers: one process on {HOST}, uvicorn log level "
        f"warning; {escape(stack_note(stack))}{load_note()}"
    )
    folder = scratch.folder("throughput")
    pipeline = folder / "pipeline.py"
    pipeline.write_text(THROUGHPUT_PIPELINE)
    script = folder / "post.lua"
    script.write_text(WRK_SCRIPT)
    servers: list[Server] = []
    try:
        conveyor = conveyor_server(folder, pipeline, free_port())
        servers.append(conveyor)
        bare = bare_server(folder, free_port())
        servers.append(bare)
        conveyor.wait_ready("/readyz")
        bare.wait_ready("/openapi.json")
        targets = [
            Target("steps", "conveyor POST /steps/double", conveyor, "/steps/double",
                   lambda b: b == {"step": "double", "output": 42}),
            Target("bare", "bare FastAPI def POST /double", bare, "/double",
                   lambda b: b == {"output": 42}),
            Target("bare_async", "bare FastAPI async def POST /double-async", bare,
                   "/double-async", lambda b: b == {"output": 42}),
            Target("invoke", "conveyor POST /invoke (whole pipeline, ledger)", conveyor,
                   "/invoke", lambda b: b.get("outputs") == {"x": 21, "double": 42}),
        ]  # fmt: skip
        for target in targets:  # one checked answer each before any load
            conn = http.client.HTTPConnection(HOST, target.server.port, timeout=30)
            try:
                _, status, body = post(conn, target.path, {"x": 21})
            finally:
                conn.close()
            expect(target.label, status, body, target.check)
        base = 1_000_000_000  # request numbers: new in every run, apart from the check's 21
        for target in targets:
            wrk(cfg, script, target.url, cfg.warmup, base)
            base += 1_000_000_000
        runs: list[LoadRun] = []
        for round_ in range(cfg.rounds):
            order = targets[round_ % len(targets) :] + targets[: round_ % len(targets)]
            for target in order:
                time.sleep(SETTLE)
                run = load_run(cfg, script, target, round_ + 1, base, cfg.seconds)
                base += 1_000_000_000
                runs.append(run)
                say(
                    f"   round {round_ + 1}: {escape(target.label):48} {run.rps:8,.0f} req/s  "
                    f"p50 {ms(run.p50):>9}  p99 {ms(run.p99):>9}  server CPU "
                    f"{run.cpu_per_request * 1e6:6.0f} us/req{load_note()}"
                )
        codes = {server.name: server.stop() for server in servers}
    finally:
        for server in servers:
            server.close()
    scratch.drop(folder)

    summary: dict[str, dict[str, Any]] = {}
    for target in targets:
        mine = [r for r in runs if r.target == target.key]
        summary[target.key] = {
            "label": target.label,
            "rps": median([r.rps for r in mine]),
            "p50": median([r.p50 for r in mine]),
            "p99": median([r.p99 for r in mine]),
            "cpu_per_request": median([r.cpu_per_request for r in mine]),
            "rounds": [r.rps for r in mine],
        }
    steps, bare_def, bare_async = summary["steps"], summary["bare"], summary["bare_async"]
    ratio = steps["rps"] / bare_def["rps"]
    ratio_async = steps["rps"] / bare_async["rps"]
    per_round = [s / b for s, b in zip(steps["rounds"], bare_def["rounds"], strict=True)]
    say(
        f"   conveyor/bare def {ratio:.2f}x (per round "
        f"{', '.join(f'{r:.2f}' for r in per_round)}), conveyor/bare async def "
        f"{ratio_async:.2f}x; exit status after SIGTERM: "
        + ", ".join(f"{name} {code}" for name, code in codes.items())
        + (" (uvicorn re-raises SIGTERM once its shutdown is done)" if codes["bare"] else "")
    )
    results.sections["throughput"] = {
        "stack": stack,
        "wrk": {
            "threads": cfg.wrk_threads,
            "connections": cfg.connections,
            "seconds": cfg.seconds,
            "warmup_seconds": cfg.warmup,
            "rounds": cfg.rounds,
        },
        "runs": [dict(asdict(r), cpu_per_request=r.cpu_per_request) for r in runs],
        "summary": summary,
        "ratio_steps_to_bare_def": ratio,
        "ratio_steps_to_bare_def_per_round": per_round,
        "ratio_steps_to_bare_async": ratio_async,
        "exit_codes": codes,
    }

    def line(key: str) -> Row:
        s = summary[key]
        return Row(
            "1 throughput",
            f"{s['label']}: requests/s",
            f"{s['rps']:,.0f}/s",
            f"p50 {ms(s['p50'])}, p99 {ms(s['p99'])}; server CPU "
            f"{s['cpu_per_request'] * 1e6:,.0f} us/request",
            "(info)",
            None,
        )

    rounds = f"median of {cfg.rounds} round(s) of {cfg.seconds} s"
    results.rows += [
        line("steps"),
        line("bare"),
        Row(
            "1 throughput",
            "conveyor /steps / bare def (requests/s)",
            f"{ratio:.2f}x",
            f"{rounds}; per round {', '.join(f'{r:.2f}' for r in per_round)}",
            f">= {RATIO_TARGET}x",
            ratio >= RATIO_TARGET,
        ),
        line("bare_async"),
        Row(
            "1 throughput",
            "  conveyor /steps / bare async def",
            f"{ratio_async:.2f}x",
            "async def runs on the event loop; a blocking step could not",
            "(info)",
            None,
        ),
        line("invoke"),
    ]


# ------------------------------------------------------------------------------------------------
# 2. Cold start and warm latency
# ------------------------------------------------------------------------------------------------

COLD_PIPELINE = '''\
import os
import time

import conveyor as cv

pipe = cv.Pipeline("bench-http-cold")


@pipe.resource
def model() -> dict:
    """A model that takes {load_seconds} s to load; each build is logged with its pid."""
    with open("builds.txt", "a") as fh:
        fh.write(f"{{os.getpid()}}\\n")
    time.sleep({load_seconds})
    return {{"scale": 3, "weights": list(range(1000))}}


@pipe.step
def scored(item: cv.Item, model: dict) -> int:
    """The item's number times the model's scale."""
    return model["scale"] * int(item["x"])
'''


def cold_start(cfg: Config, folder: Path, start: int) -> dict[str, Any]:
    """Start a server, time it until ready, time requests, stop it; what was measured."""
    pipeline = folder / "pipeline.py"
    pipeline.write_text(COLD_PIPELINE.format(load_seconds=cfg.load_seconds))
    port = free_port()
    server = conveyor_server(folder, pipeline, port)
    try:
        listening = None
        loading_seen = 0
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            server.alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready within {READY_TIMEOUT:g} s:\n{server.tail()}")
            try:
                status, body = get_status(port, "/readyz")
            except OSError:
                time.sleep(READY_POLL)
                continue
            now = time.perf_counter() - server.started
            listening = now if listening is None else listening
            if status == 200:
                ready, readiness = now, body
                break
            if status == 503 and body and body.get("loading"):
                loading_seen += 1
            else:
                raise RuntimeError(f"/readyz answered {status} {body!r} while starting")
            time.sleep(READY_POLL)
        builds_at_ready = (folder / "builds.txt").read_text().split()

        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        conn.connect()  # the first request's time is the request's, not the TCP handshake's
        x = 1_000_000 * (start + 1)

        def steps_once(i: int) -> float:
            seconds, status, body = post(conn, "/steps/scored", {"item": {"x": x + i}})
            expect("/steps/scored", status, body, lambda b: b["output"] == 3 * (x + i))
            return seconds

        def invoke_once(i: int) -> float:
            seconds, status, body = post(conn, "/invoke", {"x": x + i})
            expect("/invoke", status, body, lambda b: b["outputs"] == {"scored": 3 * (x + i)})
            return seconds

        first_steps = steps_once(0)
        first_invoke = invoke_once(0)
        warm_steps = [steps_once(i) for i in range(1, cfg.requests + 1)]
        warm_invoke = [invoke_once(i) for i in range(1, cfg.requests + 1)]
        conn.close()
        server_pid = server.pid
        code = server.stop()
    finally:
        server.close()
    builds = (folder / "builds.txt").read_text().split()
    return {
        "listening_seconds": listening,
        "ready_seconds": ready,
        "cold_start_seconds": readiness.get("cold_start_seconds"),
        "readyz_loading_answers": loading_seen,
        "builds": len(builds),
        "builds_at_ready": len(builds_at_ready),
        "built_by_server": builds == [str(server_pid)],
        "first_steps": first_steps,
        "first_invoke": first_invoke,
        "warm_steps": warm_steps,
        "warm_invoke": warm_invoke,
        "exit_code": code,
    }


def bench_cold_start(cfg: Config, scratch: Scratch, results: Results) -> None:
    """Start -> ready with a 1 s resource, then first and warm request latency."""
    say(
        f"\n[bold]2. Cold start and warm latency[/bold]: a resource that loads in "
        f"{cfg.load_seconds:g} s, {cfg.starts} start(s) of `conveyor serve -w 1`, then "
        f"{cfg.requests} sequential requests each of /steps/scored and /invoke on one "
        f"keep-alive connection{load_note()}"
    )
    starts: list[dict[str, Any]] = []
    for start in range(cfg.starts):
        folder = scratch.folder(f"cold-{start}")
        measured = cold_start(cfg, folder, start)
        scratch.drop(folder)
        starts.append(measured)
        say(
            f"   start {start + 1}: listening after {measured['listening_seconds']:.2f} s, "
            f"/readyz 200 after {measured['ready_seconds']:.2f} s "
            f"({measured['readyz_loading_answers']} 503 loading answers before), "
            f"cold_start_seconds {measured['cold_start_seconds']}; "
            f"resource built {measured['builds']}x; first /steps {ms(measured['first_steps'])}, "
            f"first /invoke {ms(measured['first_invoke'])}; warm /steps p50 "
            f"{ms(median(measured['warm_steps']))}, /invoke p50 "
            f"{ms(median(measured['warm_invoke']))}{load_note()}"
        )
    steps = [s for m in starts for s in m["warm_steps"]]
    invoke = [s for m in starts for s in m["warm_invoke"]]
    stats = {
        "ready_seconds": median([m["ready_seconds"] for m in starts]),
        "listening_seconds": median([m["listening_seconds"] for m in starts]),
        "cold_start_seconds": median([m["cold_start_seconds"] for m in starts]),
        "steps_p50": median(steps),
        "steps_p99": quantile(steps, 0.99),
        "invoke_p50": median(invoke),
        "invoke_p99": quantile(invoke, 0.99),
        "first_steps": median([m["first_steps"] for m in starts]),
        "first_invoke": median([m["first_invoke"] for m in starts]),
    }
    results.sections["cold_start"] = {
        "load_seconds": cfg.load_seconds,
        "requests_per_start": cfg.requests,
        "starts": starts,
        "summary": stats,
    }
    once = all(m["builds"] == 1 and m["builds_at_ready"] == 1 and m["built_by_server"]
               for m in starts)  # fmt: skip
    gated = all(m["readyz_loading_answers"] > 0 for m in starts) and all(
        m["cold_start_seconds"] >= cfg.load_seconds for m in starts
    )
    first_limit = cfg.load_seconds / 4
    first_ok = all(max(m["first_steps"], m["first_invoke"]) < first_limit for m in starts)

    def spread(key: str) -> str:
        return f"min {min(m[key] for m in starts):.2f} s, max {max(m[key] for m in starts):.2f} s"

    n = f"{cfg.starts} start(s)"
    results.rows += [
        Row(
            "2 cold start",
            "process start -> /readyz 200",
            f"{stats['ready_seconds']:.2f} s",
            f"median of {n} ({spread('ready_seconds')}); listening after "
            f"{stats['listening_seconds']:.2f} s",
            "(info)",
            None,
        ),
        Row(
            "2 cold start",
            "  cold_start_seconds reported by /readyz",
            f"{stats['cold_start_seconds']:.2f} s",
            f"the resource takes {cfg.load_seconds:g} s; /readyz 503 'loading' until then",
            f"503 until loaded, >= {cfg.load_seconds:g} s",
            gated,
        ),
        Row(
            "2 cold start",
            "resource builds per start",
            ", ".join(str(m["builds"]) for m in starts),
            "all in the server process, before /readyz 200; none after "
            f"{2 * cfg.requests} requests",
            "1, before ready",
            once,
        ),
        Row(
            "2 cold start",
            "first /steps, /invoke after ready",
            f"{ms(stats['first_steps'])}, {ms(stats['first_invoke'])}",
            f"{stats['first_steps'] / stats['steps_p50']:.1f}x, "
            f"{stats['first_invoke'] / stats['invoke_p50']:.1f}x the warm p50",
            f"< {ms(first_limit)} (no load)",
            first_ok,
        ),
        Row(
            "2 cold start",
            "warm /steps/scored p50 / p99",
            f"{ms(stats['steps_p50'])} / {ms(stats['steps_p99'])}",
            f"{len(steps)} sequential requests, keep-alive",
            "(info)",
            None,
        ),
        Row(
            "2 cold start",
            "warm /invoke p50 / p99",
            f"{ms(stats['invoke_p50'])} / {ms(stats['invoke_p99'])}",
            f"{len(invoke)} sequential requests, keep-alive, through the ledger",
            "(info)",
            None,
        ),
    ]


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


SECTIONS: dict[str, Callable[[Config, Scratch, Results], None]] = {
    "throughput": bench_throughput,
    "cold_start": bench_cold_start,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.metric_main(
        argv,
        doc=__doc__,
        name="HTTP benchmark",
        title="Conveyor HTTP benchmark",
        sections=SECTIONS,
        make_config=Config.make,
        scratch_prefix="conveyor-http-",
    )


if __name__ == "__main__":
    sys.exit(main())
