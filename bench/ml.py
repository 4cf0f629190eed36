"""Training with a search: Conveyor's ``train`` against Optuna and Ray Tune on the same
objective, its cached rerun, and a study SIGKILLed and resumed.

Usage::

    python bench/ml.py [--quick] [--json OUT] [--only search|rerun|crash ...]

The objective (``_ml_objective.py``): a real scikit-learn fit of ~50 ms (``SGDClassifier``, a
fixed 16 epochs, behind a ``StandardScaler``) on scikit-learn's bundled digits table, scored by
accuracy on the same 80/20 split (Conveyor's hash split) for every tool, over the same space
(``alpha`` and ``eta0`` log-uniform, ``learning_rate`` a choice of three), TPE seeded per
repetition with ``constant_liar=True``, 2 workers. Sections:

* ``search``: 200 trials (``--quick``: 20), seeds 0, 1, 2 (``--quick``: 0), each tool in a
  fresh child process (``_ml_child.py``), the tools' order rotated per seed:
  Conveyor (``conveyor.ml.training.train`` with the bench pipeline ``_ml_pipeline.py``,
  ``workers=2``, a fresh SQLite ledger and artifact folder), ``optuna``
  (``study.optimize(n_jobs=2)``, threads) and Ray Tune (``OptunaSearch``,
  ``max_concurrent_trials=2``, ``reuse_actors=True``, a local ``ray.init(num_cpus=2)``).
  Timed: the ``train`` call, ``create_study`` + ``optimize``, ``tuner.fit()``; ``ray.init`` is
  timed apart and reported beside it, not in the compared wall. Target: Conveyor's median wall
  <= 1.1x the better peer's; its best values within the peers' spread over the 3 seeds.
* ``rerun``: the same ``train`` call again on the same ledger and artifacts, in the same
  process, right after each Conveyor run of ``search``: wall, ratio to the first run, and
  trials computed (must be 0). Target: <= 5%. ``crash`` also times ``conveyor train`` run
  again as a command (the interpreter's start and imports included).
* ``crash``: ``conveyor train bench/_ml_pipeline.py`` as a subprocess on a CSV of the table,
  SIGKILLed once 40% of its trials are done (polled in the ledger), then the same command
  again. From the ledger (``units`` and ``attempts`` of the ``trial`` step): how many trials
  finished before the kill ran again (must be 0); the execution log the objective writes
  (one line per fit started) is counted as a cross-check.

Every figure of the search is the median over the seeds; ratios are taken within one run.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import _common
import _ml_objective as objective
from _common import MetricRow, Results, Scratch, load_note, median, say

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PIPELINE = BENCH_DIR / "_ml_pipeline.py"
CHILD = BENCH_DIR / "_ml_child.py"
WORKERS = 2
TOOLS = ("conveyor", "optuna", "ray")
LABELS = {"conveyor": "Conveyor train()", "optuna": "optuna n_jobs=2", "ray": "Ray Tune"}
WALL_TARGET = 1.10
RERUN_TARGET = 0.05
#: Share of the crash study's trials finished when it is killed.
KILL_AT = 0.4
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO / "src"), str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p
    ),
    "NO_COLOR": "1",
    "COLUMNS": "200",
    "PYTHONUNBUFFERED": "1",
}

Row = MetricRow


@dataclass
class Config:
    """Sizes of the run."""

    quick: bool
    trials: int
    seeds: tuple[int, ...]
    crash_trials: int
    child_timeout: float = 1800.0

    @classmethod
    def make(cls, quick: bool) -> Config:
        """Full or ``--quick`` sizes."""
        if quick:
            return cls(quick=True, trials=20, seeds=(0,), crash_trials=20)
        return cls(quick=False, trials=200, seeds=(0, 1, 2), crash_trials=200)


# ------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------


def run_child(tool: str, seed: int, trials: int, folder: Path, cfg: Config) -> dict[str, Any]:
    """One tool, one seed, in a fresh process; its numbers."""
    out = folder / "result.json"
    log = folder / "child.log"
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, str(CHILD), tool, "--seed", str(seed), "--trials", str(trials),
             "--workers", str(WORKERS), "--folder", str(folder), "--out", str(out)],
            env=ENV, stdout=sink, stderr=subprocess.STDOUT, timeout=cfg.child_timeout,
        )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"{tool} seed {seed} exited {done.returncode}:\n{tail}")
    found: dict[str, Any] = json.loads(out.read_text())
    if found["trials"] != trials:
        raise RuntimeError(f"{tool} seed {seed} ran {found['trials']} trials, not {trials}")
    return found


def fit_seconds(samples: int = 9) -> float:
    """The median seconds of one fit + score here, inline (the objective's own cost)."""
    from conveyor.ml.splits import split
    from conveyor.ml.training import TRAINING_SHARES

    parts = split(objective.table(), TRAINING_SHARES, None)
    params = {"alpha": 1e-4, "eta0": 1e-2, "learning_rate": "optimal"}
    objective.evaluate(params, parts["train"], parts["valid"])
    return median([objective.evaluate(params, parts["train"], parts["valid"])[1]
                   for _ in range(samples)])  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Search
# ------------------------------------------------------------------------------------------------


def bench_search(cfg: Config, scratch: Scratch, results: Results[Config, Row]) -> None:
    """Conveyor against optuna and Ray Tune: median walls over the seeds, best values."""
    fit = fit_seconds()
    say(f"\n[bold]Search[/bold]: {cfg.trials} trials of a {fit * 1000:.0f} ms fit (median, "
        f"inline), workers={WORKERS}, seeds {list(cfg.seeds)}{load_note()}")  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    for rep, seed in enumerate(cfg.seeds):
        order = TOOLS[rep % 3 :] + TOOLS[: rep % 3]  # rotate so drift hits all alike
        for tool in order:
            folder = scratch.folder(f"{tool}-{seed}")
            found = run_child(tool, seed, cfg.trials, folder, cfg)
            scratch.drop(folder)
            runs[tool].append(found)
            extra = f", ray.init {found['startup']:.1f} s" if tool == "ray" else ""
            rerun = (f", rerun {found['rerun_wall']:.3f} s computing {found['rerun_computed']}"
                     if tool == "conveyor" else "")  # fmt: skip
            say(f"   seed {seed} {tool:>8}: wall {found['wall']:.2f} s, best "
                f"{found['best']:.4f}, trial seconds {found['busy']:.1f}{extra}{rerun}"
                f"{load_note()}")  # fmt: skip
    walls = {tool: median([r["wall"] for r in runs[tool]]) for tool in TOOLS}
    bests = {tool: [r["best"] for r in runs[tool]] for tool in TOOLS}
    per_trial = {
        tool: median([(r["wall"] - r["busy"] / WORKERS) / cfg.trials for r in runs[tool]])
        for tool in TOOLS
    }
    busy = {tool: median([r["busy"] / cfg.trials for r in runs[tool]]) for tool in TOOLS}
    startup = median([r["startup"] for r in runs["ray"]])
    better = min(("optuna", "ray"), key=lambda t: walls[t])
    ratio = walls["conveyor"] / walls[better]
    # Paired in time (the same seed, back to back): the load drifts between seeds.
    paired = [
        c["wall"] / min(o["wall"], r["wall"])
        for c, o, r in zip(runs["conveyor"], runs["optuna"], runs["ray"], strict=True)
    ]
    peer_bests = bests["optuna"] + bests["ray"]
    low, high = min(peer_bests), max(peer_bests)
    ours = median(bests["conveyor"])
    within = low <= ours <= high
    results.sections["search"] = {
        "fit_seconds": fit, "runs": runs, "median_wall": walls, "best_values": bests,
        "overhead_per_trial": per_trial, "trial_seconds": busy, "ray_init": startup,
        "better_peer": better, "ratio": ratio, "paired_ratios": paired,
        "peer_spread": [low, high],
    }  # fmt: skip
    for tool in TOOLS:
        note = f" (+ ray.init {startup:.1f} s, not in the wall)" if tool == "ray" else ""
        results.rows.append(Row(
            "search", f"wall, {LABELS[tool]}", f"{walls[tool]:.2f} s",
            f"{per_trial[tool] * 1000:.0f} ms/trial beyond the trials' own "
            f"{busy[tool] * 1000:.0f} ms / {WORKERS}{note}", "", None,
        ))  # fmt: skip
    results.rows.append(Row(
        "search", "Conveyor wall / better peer", f"{ratio:.2f}x",
        f"vs {LABELS[better]} {walls[better]:.2f} s; per seed, to the better peer of that "
        f"seed: {', '.join(f'{x:.2f}x' for x in paired)}", f"<= {WALL_TARGET:.1f}x",
        ratio <= WALL_TARGET,
    ))  # fmt: skip
    values = ", ".join(f"{v:.4f}" for v in bests["conveyor"])
    above = " (above the peers' best)" if ours > high else ""
    results.rows.append(Row(
        "search", "Conveyor best accuracy per seed", values,
        f"median {ours:.4f}{above}; peers {low:.4f}..{high:.4f} (optuna "
        f"{', '.join(f'{v:.4f}' for v in bests['optuna'])}; Ray "
        f"{', '.join(f'{v:.4f}' for v in bests['ray'])})",
        "within the peers' spread", within or ours > high,
    ))  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Cached rerun
# ------------------------------------------------------------------------------------------------


def bench_rerun(cfg: Config, scratch: Scratch, results: Results[Config, Row]) -> None:
    """The same train() call again on the same ledger: wall, ratio, trials computed."""
    runs = results.sections.get("search", {}).get("runs", {}).get("conveyor")
    if not runs:
        say(f"\n[bold]Cached rerun[/bold]: {cfg.trials} trials, seeds {list(cfg.seeds)}"
            f"{load_note()}")  # fmt: skip
        runs = []
        for seed in cfg.seeds:
            folder = scratch.folder(f"rerun-{seed}")
            runs.append(run_child("conveyor", seed, cfg.trials, folder, cfg))
            scratch.drop(folder)
    ratios = [r["rerun_wall"] / r["wall"] for r in runs]
    computed = max(r["rerun_computed"] for r in runs)
    same = all(r["rerun_best"] == r["best"] for r in runs)
    ratio = median(ratios)
    say("\n[bold]Cached rerun[/bold]: " + ", ".join(
        f"{r['rerun_wall']:.3f} s of {r['wall']:.2f} s" for r in runs))  # fmt: skip
    results.sections["rerun"] = {
        "walls": [r["rerun_wall"] for r in runs], "first_walls": [r["wall"] for r in runs],
        "ratios": ratios, "computed": [r["rerun_computed"] for r in runs], "same_best": same,
    }  # fmt: skip
    results.rows.append(Row(
        "rerun", "same train() again / first run", f"{ratio:.1%}",
        f"{median([r['rerun_wall'] for r in runs]):.3f} s of "
        f"{median([r['wall'] for r in runs]):.2f} s; trials computed {computed}; "
        f"same best: {same}", f"<= {RERUN_TARGET:.0%}, 0 computed",
        ratio <= RERUN_TARGET and computed == 0 and same,
    ))  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Crash
# ------------------------------------------------------------------------------------------------


def query(ledger: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the ledger, or none while it cannot be read yet."""
    if not ledger.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []


#: Every trial unit of the ledger, by its item id (a trial's number is in it).
TRIAL_UNITS = """
SELECT i.item_id, u.id, u.run_id, u.state, u.attempts, u.started_at, u.finished_at,
       (SELECT count(*) FROM attempts a WHERE a.unit_id = u.id)
FROM units u JOIN items i ON i.run_id = u.run_id AND i.idx = u.item_idx
WHERE u.step = 'trial' ORDER BY u.id
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def train_command(folder: Path, ledger: Path, trials: int) -> list[str]:
    """``conveyor train`` of the bench pipeline on the CSV of the table in ``folder``."""
    return [sys.executable, "-m", "conveyor", "train", str(PIPELINE), "--input",
            str(folder / "digits.csv"), "--trials", str(trials), "--workers", str(WORKERS),
            "--store", str(ledger), "--artifacts", str(ledger.parent / "artifacts"),
            "--seed", "0", "--json"]  # fmt: skip


def start(command: list[str], folder: Path, sink: IO[str]) -> subprocess.Popen[str]:
    """Start ``command`` in ``folder`` with the execution log on."""
    env = {**ENV, objective.LOG_ENV: str(folder / "executions.log")}
    return subprocess.Popen(command, cwd=folder, env=env, stdout=sink, stderr=sink, text=True)


def finish(command: list[str], folder: Path) -> tuple[float, dict[str, Any]]:
    """Run ``command`` to its end: its wall (the whole process) and its ``--json`` output."""
    out, err = folder / "out.json", folder / "err.log"
    with out.open("w") as stdout, err.open("a") as stderr:
        started = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=folder,
            stdout=stdout,
            stderr=stderr,
            timeout=1800,
            env={**ENV, objective.LOG_ENV: str(folder / "executions.log")},
        )
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"conveyor train exited {done.returncode}: {err.read_text()[-800:]}")
    found: dict[str, Any] = json.loads(out.read_text())
    return wall, found


def kill_mid_study(command: list[str], folder: Path, ledger: Path, at: int) -> dict[str, Any]:
    """Start ``command``, SIGKILL it once ``at`` trials are done; what the ledger held then."""
    done_sql = "SELECT count(*) FROM units WHERE step = 'trial' AND state = 'done'"
    with (folder / "killed.log").open("w") as sink:
        proc = start(command, folder, sink)
        try:
            deadline = time.monotonic() + 1800
            while proc.poll() is None and time.monotonic() < deadline:
                rows = query(ledger, done_sql)
                if rows and rows[0][0] >= at:
                    break
                time.sleep(0.02)
            if proc.poll() is not None:
                raise RuntimeError(f"conveyor train ended before the kill ({proc.returncode})")
            workers = _common.children(proc.pid)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # The workers notice their coordinator is gone; kill any left after a while.
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = [pid for pid in workers if alive(pid)]
    for pid in leftover:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    units = query(ledger, TRIAL_UNITS)
    return {"killed_at": killed_at, "workers": len(workers), "workers_left": len(leftover),
            "units": units}  # fmt: skip


def number_of(item_id: str) -> int:
    """The trial number in a trial's item id (``trial-00012-KEY``)."""
    return int(item_id.split("-")[1])


def bench_crash(cfg: Config, scratch: Scratch, results: Results[Config, Row]) -> None:
    """conveyor train, SIGKILLed mid-study, then the same command: no finished trial reruns.
    Before that, the same command on a fresh ledger twice: the cached rerun as a command."""
    trials = cfg.crash_trials
    at = max(2, int(trials * KILL_AT))
    say(f"\n[bold]Crash[/bold]: `conveyor train` of {trials} trials, workers={WORKERS}, "
        f"SIGKILL at {at} done, then the same command{load_note()}")  # fmt: skip
    folder = scratch.folder("crash")
    objective.table().to_csv(folder / "digits.csv", index=False)

    plain = folder / "plain" / "ledger.db"
    plain.parent.mkdir()
    command = train_command(folder, plain, trials)
    first_wall, first = finish(command, folder)
    again_wall, again = finish(command, folder)
    say(f"   command, fresh ledger: {first_wall:.2f} s ({first['computed']} computed); again: "
        f"{again_wall:.2f} s ({again['computed']} computed)")  # fmt: skip
    (folder / "executions.log").unlink(missing_ok=True)

    ledger = folder / "killed" / "ledger.db"
    ledger.parent.mkdir()
    command = train_command(folder, ledger, trials)
    before = kill_mid_study(command, folder, ledger, at)
    finished = {row[0]: row for row in before["units"] if row[3] == "done"}
    running = [row for row in before["units"] if row[3] == "running"]
    logged_before = Counter((folder / "executions.log").read_text().splitlines())
    say(f"   killed with {len(finished)} trials done, {len(running)} running; "
        f"{before['workers']} workers, {before['workers_left']} left to kill")  # fmt: skip
    resume_wall, resumed = finish(command, folder)
    after = query(ledger, TRIAL_UNITS)
    by_item: dict[str, list[tuple[Any, ...]]] = {}
    for row in after:
        by_item.setdefault(row[0], []).append(row)
    # A finished trial ran again if its unit changed, or another unit of it started after the kill.
    rerun_ledger = sorted(
        number_of(item)
        for item, old in finished.items()
        if any(
            (row[1] == old[1] and row[4:8] != old[4:8])
            or (row[1] != old[1] and row[5] is not None and row[5] >= before["killed_at"])
            for row in by_item.get(item, [])
        )
    )
    extra_attempts = sum(row[7] for row in after if row[0] in finished)
    params = {t["number"]: json.dumps(t["params"], sort_keys=True) for t in resumed["trials"]}
    logged = Counter((folder / "executions.log").read_text().splitlines())
    rerun_log = sum(
        logged[params[number_of(item)]] - 1 for item in finished if logged[params[number_of(item)]]
    )
    # The same test on the trials running at the kill: those must run again (the check can fail).
    in_flight_rerun = sum(
        1
        for old in running
        if any(row[5] is not None and row[5] >= before["killed_at"] for row in by_item[old[0]])
    )
    total_done = sum(1 for rows in by_item.values() if any(r[3] == "done" for r in rows))
    unique = len({json.dumps(t["params"], sort_keys=True) for t in resumed["trials"]})
    again_wall2, again2 = finish(command, folder)
    say(f"   resumed in {resume_wall:.2f} s: {resumed['computed']} computed, "
        f"{len(resumed['trials'])} trials; finished trials run again (ledger) "
        f"{len(rerun_ledger)}, (execution log) {rerun_log}; the same command again "
        f"{again_wall2:.2f} s, {again2['computed']} computed")  # fmt: skip
    results.sections["crash"] = {
        "trials": trials, "kill_at": at, "finished_at_kill": len(finished),
        "running_at_kill": len(running), "workers_left": before["workers_left"],
        "resume_wall": resume_wall, "resume_computed": resumed["computed"],
        "resume_trials": len(resumed["trials"]), "trials_done": total_done,
        "rerun_from_ledger": rerun_ledger, "attempt_rows_of_finished": extra_attempts,
        "rerun_from_log": rerun_log, "logged_before_kill": sum(logged_before.values()),
        "logged_total": sum(logged.values()), "distinct_params": unique,
        "in_flight_rerun": in_flight_rerun, "command_first_wall": first_wall,
        "command_first_computed": first["computed"], "command_again_wall": again_wall,
        "command_again_computed": again["computed"], "after_resume_again_wall": again_wall2,
        "after_resume_again_computed": again2["computed"],
    }  # fmt: skip
    ok = (not rerun_ledger and rerun_log == 0 and extra_attempts == 0
          and resumed["computed"] == trials - len(finished) and total_done == trials
          and again2["computed"] == 0 and in_flight_rerun == len(running))  # fmt: skip
    results.rows.append(Row(
        "crash", "finished trials run again after SIGKILL", str(len(rerun_ledger)),
        f"{len(finished)} done and {len(running)} running at the kill ({in_flight_rerun} of "
        f"those seen running again by the same test); the resume computed "
        f"{resumed['computed']} ({trials} in all); execution log: {rerun_log} repeated",
        "0 (from the ledger)", ok,
    ))  # fmt: skip
    ratio = again_wall / first_wall
    results.rows.append(Row(
        "crash", "`conveyor train` again / first (command)", f"{ratio:.1%}",
        f"{again_wall:.2f} s of {first_wall:.2f} s, {again['computed']} computed "
        "(the interpreter's start and imports included)", "(reported)", None,
    ))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section, print the summary table, write ``--json``; returns the exit status."""
    return _common.metric_main(
        argv,
        doc=__doc__,
        name="training benchmark",
        title="Conveyor training benchmark",
        sections={"search": bench_search, "rerun": bench_rerun, "crash": bench_crash},
        make_config=Config.make,
        scratch_prefix="conveyor-bench-ml-",
    )


if __name__ == "__main__":
    sys.exit(main())
