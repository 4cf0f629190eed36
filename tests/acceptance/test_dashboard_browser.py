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
