"""The dashboard in a real headless Chromium (Debian's chromium and chromedriver, driven by
Selenium) over a real ``conveyor run`` and a real ``conveyor dashboard``: progress moves
without a reload, an error group drills down to a traceback, script in an error message stays
text, and a redrive from the page finishes the dead units. Screenshots are kept under
``test-artifacts/dashboard/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
INJECTION = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
PIPELINE = f"""
import time
import conveyor as cv

pipe = cv.Pipeline("docs")

@pipe.step
def text(item: cv.Item) -> str:
    time.sleep(0.12)  # slow enough to watch
    return item["text"]

@pipe.step
def parse(text: str) -> int:
    if text == "bad":
        raise ValueError({INJECTION!r} + " cannot parse " + text)
    return len(text)

@pipe.step
def score(parse: int) -> float:
    return parse / 2
"""
ITEMS = 60  # every 10th is bad
T = TypeVar("T")


def browser_or_skip() -> Any:
    """A headless Chromium; skipped without one, failed in CI."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        reason = f"no browser to test the dashboard with: {', '.join(missing)} missing"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason} (apt-get install chromium chromium-driver)", pytrace=False)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # the page is between renders: look again
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = browser_or_skip()
    yield driver
    driver.quit()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``conveyor ARGS`` in ``tmp_path``, its output in a log file there; every process
    started is stopped after the test."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    env = {**os.environ, "NO_COLOR": "1", "CONVEYOR_STORE": "ledger.db"}

    def start_(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "conveyor", *args], cwd=tmp_path,
                                env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        started.append((proc, log))
        return proc

    yield start_
    for proc, log in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_watch_a_run_drill_into_an_error_and_redrive_it(
    tmp_path: Path, browser: Any, start: Callable[..., subprocess.Popen[bytes]]
) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "p.py").write_text(PIPELINE)
    rows = [{"id": f"doc-{i:03d}", "text": "bad" if i % 10 == 3 else f"fine text {i}"}
            for i in range(ITEMS)]  # fmt: skip
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = start("run", "run", "p.py", "--input", "rows.jsonl", "--id-field", "id", "-w", "1",
                "--no-progress")  # fmt: skip
    wait_for("the run's ledger", lambda: (tmp_path / "ledger.db").exists(), 30)
    port = free_port()
    start("dashboard", "dashboard", "--port", str(port), "-w", "1")
    base = f"http://127.0.0.1:{port}"

    def runs() -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{base}/dashboard/api/runs", timeout=5) as answer:
            return list(json.loads(answer.read())["runs"])

    run_id = wait_for("the dashboard and its run", lambda: runs()[0]["id"], 30)

    # the list of runs, then the run page: progress moves while we watch, with no reload
    browser.get(f"{base}/dashboard")
    wait_for("the runs table", lambda: browser.find_elements(By.CSS_SELECTOR, "tbody tr"))
    browser.get(f"{base}/dashboard/runs/{run_id}")
    browser.execute_script("window.sameDocument = true")

    def progress() -> int | None:
        text = browser.find_element(By.ID, "overall-progress").text
        match = re.search(r"([\d,]+) /", text)
        return int(match.group(1).replace(",", "")) if match else None

    first = wait_for("the run's progress", progress)
    later = wait_for("progress to move", lambda: (p := progress()) and p > first and p, 30)
    assert later > first and browser.execute_script("return window.sameDocument") is True
    assert run.poll() is None, "the run finished before the page could watch it"
    assert "live" in browser.find_element(By.ID, "live").text
    browser.save_screenshot(str(ARTIFACTS / "1-running.png"))

    assert run.wait(120) == 1, (tmp_path / "run.log").read_text()
    wait_for("the finished state", lambda: "finished" in browser.find_element(By.ID, "live").text)
    wait_for("the error group", lambda: browser.find_elements(By.CSS_SELECTOR, ".group-head"))
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "2-finished.png"))

    # an error group drills down to a unit's traceback; the script in its message stays text
    browser.find_element(By.CSS_SELECTOR, ".group-head").click()
    wait_for("the group's units", lambda: browser.find_elements(By.CSS_SELECTOR, ".unit-link"))
    browser.find_element(By.CSS_SELECTOR, ".unit-link").click()
    traceback = wait_for(
        "the traceback", lambda: browser.find_element(By.ID, "unit-traceback").text or None
    )
    assert "Traceback (most recent call last)" in traceback and "ValueError" in traceback
    message = browser.find_element(By.ID, "unit-error-message").text
    assert INJECTION in message
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main img")
    browser.save_screenshot(str(ARTIFACTS / "3-traceback.png"))

    # fix the code, redrive a dead unit from the queue, and see it finish
    (tmp_path / "p.py").write_text(PIPELINE.replace('text == "bad"', "False"))
    row = browser.find_element(By.CSS_SELECTOR, ".dlq tbody tr")
    row.find_element(By.CSS_SELECTOR, "button").click()
    wait_for(
        "the redrive to finish",
        lambda: "Redrive finished" in browser.find_element(By.ID, "redrive-status").text,
        90,
    )
    wait_for(
        "every parse unit done",
        lambda: (
            browser.find_element(By.CSS_SELECTOR, "tr[data-step=parse] .step-done").text
            == f"{ITEMS} / {ITEMS}"
        ),
    )
    wait_for("an empty queue", lambda: "is empty" in browser.find_element(By.ID, "slot-dead").text)
    assert runs()[0]["state"] == "completed"
    assert browser.execute_script("return window.sameDocument") is True
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    browser.save_screenshot(str(ARTIFACTS / "4-redriven.png"))
    shots = os.environ.get("CONVEYOR_DASHBOARD_SHOTS")
    if shots:  # a copy where a person looks at them
        Path(shots).mkdir(parents=True, exist_ok=True)
        for png in ARTIFACTS.glob("*.png"):
            shutil.copy(png, shots)


def register_models(folder: Path) -> None:
    """Model rain in ``folder``'s ledger: v1 and v2 promoted to champion by the gate and by a
    user whose reason is script, v3 failed its gate; model prices, a model set."""
    import cloudpickle
    import numpy as np
    from sklearn.linear_model import LinearRegression

    from conveyor.ml.artifacts import ArtifactStore
    from conveyor.ml.registry import Registry

    store = ArtifactStore(folder / "artifacts")
    x = np.arange(20, dtype=float).reshape(-1, 1)
    lineage = {
        "model": "rain", "dataset": "weather", "data_version": "d" * 64,
        "split": {"by": "hash", "shares": {"train": 0.7, "valid": 0.15, "golden": 0.15},
                  "id_column": "day"},
        "golden": {"version": "9f" * 32, "rows": 2700}, "seed": 0,
        "code_versions": {"rain": "c0ffee12", "rmse": "5eed1234"},
        "packages": {"python": "3.11.2", "scikit-learn": "1.5.2", "numpy": "2.1.0"},
    }  # fmt: skip
    scores = {1: 0.512, 2: 0.431, 3: 0.447}
    with Registry(folder / "ledger.db", str(folder / "artifacts")) as reg:
        for v, rmse in scores.items():
            champ = None if v == 1 else (1 if v == 2 else 2)
            held = None if champ is None else scores[champ]
            delta = None if held is None else held - rmse
            ok = v != 3
            rule = {"metric": "rmse", "direction": "minimize", "challenger": rmse,
                    "champion": held, "delta": delta,
                    "relative": None if held is None or delta is None else delta / held,
                    "interval": None if delta is None else [delta - 0.012, delta + 0.009],
                    "checks": {"floor": True, "min_absolute": None if held is None else ok,
                               "min_relative": None, "noise": None if held is None else ok},
                    "passed": ok, "floor": 0.6, "min_absolute": 0.0, "min_relative": None,
                    "noise": True}  # fmt: skip
            gate = {"passed": ok, "champion": champ, "golden": {"version": "9f" * 32, "rows": 2700},
                    "rescored": False, "confidence": 0.95, "resamples": 1000, "seed": 0,
                    "rules": [rule]}  # fmt: skip
            model = LinearRegression().fit(x, v * x.ravel())
            reg.register(
                name="rain", artifact=store.put_bytes(cloudpickle.dumps(model)),
                run_id=f"run-{v}", gate=gate,
                lineage={**lineage, "trial": v * 7, "params": {"max_depth": v + 3,
                                                               "learning_rate": 0.05 * v}},
                metrics={"valid": {"rmse": rmse - 0.008, "mae": rmse * 0.7},
                         "golden": {"rmse": rmse, "mae": rmse * 0.72}},
            )  # fmt: skip
        reg.promote("rain", 1, actor="gate", who="run-1", reason="first model: nothing to beat")
        reg.promote("rain", 2, actor="user", who="alice", reason=INJECTION)
        reg.promote("rain", 1, alias="challenger", actor="alarm", who="latency-p95",
                    reason="kept warm for a rollback")  # fmt: skip
        reg.add_export("rain", 2, format="onnx", details={"parity": 1.2e-7, "rows": 2700})
        model = LinearRegression().fit(x, x.ravel())
        reg.register(name="prices", artifact=store.put_bytes(cloudpickle.dumps(model)),
                     kind="model_set", members=3)  # fmt: skip


def test_models_pages_show_the_registry_and_promote_from_the_page(
    tmp_path: Path, browser: Any, start: Callable[..., subprocess.Popen[bytes]]
) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    register_models(tmp_path)
    port = free_port()
    start("dashboard", "dashboard", "--port", str(port), "--token", "s3cret")
    base = f"http://127.0.0.1:{port}"
    wait_for("the dashboard", lambda: urllib.request.urlopen(f"{base}/healthz", timeout=5), 30)
    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731

    # the token once in the fragment; then the runs list links to the models
    browser.get(f"{base}/dashboard#token=s3cret")
    wait_for("the runs list", lambda: "No runs yet" in browser.find_element(By.ID, "main").text)
    browser.find_element(By.ID, "nav-models").click()
    rows = wait_for("the models table", lambda: css("#models-table tbody tr"))
    assert [r.get_attribute("data-model") for r in rows] == ["prices", "rain"]
    assert "champion" in rows[1].text and "v2" in rows[1].text
    browser.save_screenshot(str(ARTIFACTS / "m1-models.png"))

    # a model: its versions, aliases, the timeline; the reason with script in it stays text
    rows[1].find_element(By.CSS_SELECTOR, "a").click()
    wait_for("the versions", lambda: len(css("#versions-table tbody tr")) == 3)
    wait_for("the timeline", lambda: len(css("#alias-timeline g.move")) == 3)
    history = browser.find_element(By.ID, "history-table").text
    assert INJECTION in history
    tips = [t.get_attribute("textContent") for t in css("#alias-timeline g.move title")]
    assert any("champion: v1 → v2" in t and f"why: {INJECTION}" in t and "alice" in t
               for t in tips), tips  # fmt: skip
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    assert not css("main script, main img")
    browser.save_screenshot(str(ARTIFACTS / "m2-model.png"))

    # promote v3, whose gate failed: the button waits for "force", then asks to confirm
    css("#versions-table tr[data-version='3'] button")[0].click()
    wait_for("v3 chosen", lambda: browser.find_element(By.ID, "promote-version")
             .get_attribute("value") == "3")  # fmt: skip
    assert not browser.find_element(By.ID, "promote-button").is_enabled()
    browser.find_element(By.ID, "promote-force").click()
    wait_for("the button", lambda: browser.find_element(By.ID, "promote-button").is_enabled())
    browser.find_element(By.ID, "promote-reason").send_keys("<b>try</b> v3 on live traffic")
    browser.find_element(By.ID, "promote-button").click()
    question = wait_for(
        "the confirmation", lambda: browser.find_element(By.ID, "promote-confirm").text
    )
    assert "Move champion of rain from v2 to v3?" in question and "forced" in question
    browser.save_screenshot(str(ARTIFACTS / "m3-confirm.png"))
    browser.find_element(By.ID, "promote-confirm-yes").click()
    notice = wait_for("the notice", lambda: browser.find_element(By.ID, "model-notice").text)
    assert "champion of rain is now v3 (was v2)" in notice
    wait_for("a 4th move", lambda: len(css("#alias-timeline g.move")) == 4)
    first = css("#history-table tbody tr")[0].text
    assert "v2 → v3" in first and "forced" in first.lower() and "dashboard" in first
    assert "<b>try</b> v3 on live traffic" in first
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    browser.save_screenshot(str(ARTIFACTS / "m4-promoted.png"))

    # roll it back from the page: champion returns to v2
    browser.find_element(By.ID, "rollback-button").click()
    wait_for("the rollback question", lambda: "back from v3 to v2" in browser.find_element(
        By.ID, "rollback-confirm").text)  # fmt: skip
    browser.find_element(By.ID, "rollback-confirm-yes").click()
    wait_for("the rollback", lambda: "is now v2 (was v3)" in browser.find_element(
        By.ID, "model-notice").text)  # fmt: skip
    wait_for("a ring for the rollback", lambda: css("#alias-timeline g.move.rollback"))
    latest = css("#history-table tbody tr")[0].text
    assert "v3 → v2" in latest and "rollback" in latest
    browser.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.3)
    browser.save_screenshot(str(ARTIFACTS / "m5-rolled-back.png"))

    # a model set with no alias yet: nothing to roll back, a timeline that says so
    browser.get(f"{base}/dashboard/models/prices")
    row = wait_for("its version", lambda: css("#versions-table tbody tr"))[0]
    assert "3 groups" in row.text and "not gated" in row.text.lower()
    assert "no alias has moved yet" in browser.find_element(By.ID, "alias-timeline").text
    assert not browser.find_element(By.ID, "rollback-button").is_enabled()

    # a version: its lineage, metrics and the gate's table
    browser.get(f"{base}/dashboard/models/rain/3")
    gate_rows = wait_for("the gate's table", lambda: css("#gate-table tbody tr"))
    cells = gate_rows[0].text
    assert "rmse" in cells and "✗" in cells and "✓" in cells and "fails" in cells.lower()
    lineage = browser.find_element(By.ID, "lineage").text
    assert "weather" in lineage and "2700" in lineage and "run-3" in lineage
    assert "max_depth" in browser.find_element(By.ID, "params").text
    browser.save_screenshot(str(ARTIFACTS / "m6-version.png"))
    browser.find_element(By.ID, "version-run").click()  # the training run's page
    wait_for("the run page", lambda: "/dashboard/runs/run-3" in browser.current_url)
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    shots = os.environ.get("CONVEYOR_DASHBOARD_SHOTS")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        for png in ARTIFACTS.glob("m*.png"):
            shutil.copy(png, shots)
