"""The dashboard's API over a real ledger written by a real run: what each endpoint answers,
bad input, the token, the redrive action, and that the page ships safely (CSP, no CDN)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpclient import Client

from conveyor.interfaces.http.app import create_dashboard_app

STATIC = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "conveyor"
    / "interfaces"
    / "http"
    / "static"
    / "dashboard"
)
PIPELINE = """
import conveyor as cv
pipe = cv.Pipeline("docs")

@pipe.step
def text(item: cv.Item) -> str:
    return item["text"]

@pipe.step
def parse(text: str) -> int:
    if text.startswith("bad"):
        raise ValueError("<script>window.pwned=1</script> cannot parse " + text)
    return len(text)

@pipe.step
def score(parse: int) -> float:
    return parse / 2
"""
ITEMS = 30  # every 3rd is bad: 10 dead parse units, 10 skipped score units


def make_ledger(folder: Path) -> Path:
    """A finished run of the pipeline above, started from the CLI as a user would."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p.py").write_text(PIPELINE)
    rows = [{"id": f"doc-{i:02d}", "text": "bad" if i % 3 == 0 else "ok " + "x" * i}
            for i in range(ITEMS)]  # fmt: skip
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "p.py", "--input", "rows.jsonl",
         "--id-field", "id", "-w", "0", "--store", "ledger.db", "--no-progress"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    return folder / "ledger.db"


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ledger(tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def client(ledger_file: Path) -> Iterator[Client]:
    client = Client(create_dashboard_app(str(ledger_file), workers=0))
    yield client
    client.close()


@pytest.fixture(scope="module")
def run_id(client: Client) -> str:
    return str(client.get("/dashboard/api/runs").json()["runs"][0]["id"])


def test_runs_list_counts_units_by_state(client: Client) -> None:
    [run] = client.get("/dashboard/api/runs").json()["runs"]
    assert (run["pipeline"], run["state"]) == ("docs", "completed_with_errors")
    assert run["counts"] == {"done": 70, "dead": 10, "skipped": 10}


def test_run_summary_has_per_step_counts_and_percentiles(client: Client, run_id: str) -> None:
    body = client.get(f"/dashboard/api/runs/{run_id[:10]}").json()  # a prefix is enough
    assert body["id"] == run_id and body["redrivable"] and body["redrive"] is None
    steps = {s["step"]: s for s in body["steps_stats"]}
    assert list(steps) == ["text", "parse", "score"]
    assert steps["parse"]["counts"] == {"done": 20, "dead": 10}
    assert steps["score"]["counts"] == {"done": 20, "skipped": 10}
    assert 0 <= steps["text"]["p50"] <= steps["text"]["p95"]


def test_throughput_buckets_add_up_to_the_finished_units(client: Client, run_id: str) -> None:
    body = client.get(f"/dashboard/api/runs/{run_id}/throughput?buckets=7").json()
    assert body["end"] > body["start"]
    parse = body["steps"]["parse"]
    n = len(parse["done"])  # at most 7; at least a second each
    assert 2 <= n <= 7 and body["width"] >= min(1.0, (body["end"] - body["start"]) / 2)
    assert abs(body["width"] * n - (body["end"] - body["start"])) < 1e-6
    assert sum(parse["done"]) == 20 and sum(parse["dead"]) == 10
    assert sum(body["steps"]["score"]["done"]) == 20


def test_errors_are_grouped_and_dead_units_paged(client: Client, run_id: str) -> None:
    [group] = client.get(f"/dashboard/api/runs/{run_id}/errors").json()["groups"]
    assert (group["count"], group["step"], group["error_type"]) == (10, "parse", "ValueError")
    base = f"/dashboard/api/runs/{run_id}/dead"
    first = client.get(f"{base}?limit=4").json()
    last = client.get(f"{base}?offset=8&limit=4").json()
    assert first["more"] and not last["more"]
    assert [u["item"] for u in first["units"]] == ["doc-00", "doc-03", "doc-06", "doc-09"]
    assert [u["item"] for u in last["units"]] == ["doc-24", "doc-27"]
    sig = group["signature"]
    assert len(client.get(f"{base}?error={sig}&step=parse&limit=50").json()["units"]) == 10
    assert client.get(f"{base}?step=text").json()["units"] == []


def test_a_unit_shows_its_traceback_attempts_and_input(client: Client, run_id: str) -> None:
    [unit] = client.get(f"/dashboard/api/runs/{run_id}/dead?limit=1").json()["units"]
    detail = client.get(f"/dashboard/api/units/{unit['unit']}").json()
    assert detail["state"] == "dead" and detail["step"] == "parse"
    assert "Traceback" in detail["traceback"] and "<script>" in detail["error_message"]
    assert detail["input"] == {"kind": "record", "fields": {"id": "'doc-00'", "text": "'bad'"},
                               "truncated": False}  # fmt: skip
    assert [a["attempt"] for a in detail["attempt_log"]] == [1]
    assert client.get(f"/dashboard/api/runs/{run_id}/alarms").json() == {"alarms": []}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/dashboard/api/runs/nosuchrun", 404),
        ("/dashboard/api/runs/nosuchrun/throughput", 404),
        ("/dashboard/api/runs/nosuchrun/errors", 404),
        ("/dashboard/api/runs/nosuchrun/dead", 404),
        ("/dashboard/api/runs/nosuchrun/alarms", 404),
        ("/dashboard/api/units/999999", 404),
        ("/dashboard/api/units/abc", 422),
        ("/dashboard/api/runs?limit=0", 422),
        ("/dashboard/api/runs?limit=100000", 422),
        ("/dashboard/api/runs/RUN/dead?offset=-1", 422),
        ("/dashboard/api/runs/RUN/dead?limit=x", 422),
        ("/dashboard/api/runs/RUN/throughput?buckets=1", 422),
        ("/dashboard/static/../dashboard.py", 404),
        ("/dashboard/static/secret.py", 404),
    ],
)
def test_bad_requests_get_clear_answers(
    client: Client, run_id: str, path: str, status: int
) -> None:
    answer = client.get(path.replace("RUN", run_id))
    assert answer.status_code == status
    assert answer.json()["detail"]


def test_redrive_refuses_what_it_cannot_do(client: Client, run_id: str) -> None:
    url = f"/dashboard/api/runs/{run_id}/redrive"
    none = client.post(url, json={"step": "text"})
    assert none.status_code == 409 and "no dead units" in none.json()["detail"]
    assert client.post("/dashboard/api/runs/nosuchrun/redrive").status_code == 404
    assert client.post(url, json={"step": 3}).status_code == 422


def test_redrive_reruns_the_dead_units_with_the_fixed_code(tmp_path: Path) -> None:
    ledger = make_ledger(tmp_path)
    (tmp_path / "p.py").write_text(PIPELINE.replace('text.startswith("bad")', "False"))
    client = Client(create_dashboard_app(str(ledger), workers=0))
    run = client.get("/dashboard/api/runs").json()["runs"][0]["id"]
    accepted = client.post(f"/dashboard/api/runs/{run}/redrive", json={})
    assert accepted.status_code == 202, accepted.text
    body: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = client.get(f"/dashboard/api/runs/{run}").json()
        if body["redrive"]["state"] != "running":
            break
        time.sleep(0.1)
    assert body["redrive"]["state"] == "finished", body["redrive"]
    assert (body["state"], body["counts"]) == ("completed", {"done": 90})


def test_with_a_token_the_api_needs_it_and_the_page_does_not(ledger_file: Path) -> None:
    client = Client(create_dashboard_app(str(ledger_file), token="s3cret"))
    assert client.get("/dashboard/api/runs").status_code == 401
    assert client.post("/dashboard/api/runs/x/redrive").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/dashboard/api/runs", headers=wrong).status_code == 401
    right = {"Authorization": "Bearer s3cret"}
    assert client.get("/dashboard/api/runs", headers=right).status_code == 200
    assert client.get("/dashboard/runs/anything").status_code == 200
    assert client.get("/dashboard/static/app.js").status_code == 200


def test_the_page_forbids_inline_script_and_loads_nothing_from_elsewhere(
    client: Client,
) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert client.get("/").headers["location"] == "/dashboard"
    js = client.get("/dashboard/static/app.js")
    assert js.headers["content-type"].startswith("text/javascript")
    for file in STATIC.iterdir():
        text = file.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", text), file.name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, file.name
        assert "document.write" not in text and "eval(" not in text, file.name


def test_serve_mounts_the_dashboard_behind_its_token(tmp_path: Path) -> None:
    from conveyor.definition.loader import load_pipeline
    from conveyor.interfaces.http.app import create_app

    ledger = make_ledger(tmp_path)
    pipe, _ = load_pipeline(str(tmp_path / "p.py"))
    client = Client(create_app(pipe, store=str(ledger), token="tok", workers=0))
    assert client.get("/dashboard").status_code == 200
    assert client.get("/dashboard/api/runs").status_code == 401
    runs = client.get("/dashboard/api/runs", headers={"Authorization": "Bearer tok"})
    assert runs.status_code == 200 and runs.json()["runs"][0]["pipeline"] == "docs"
    assert client.get("/dashboard/api/models").status_code == 401
    models = client.get("/dashboard/api/models", headers={"Authorization": "Bearer tok"})
    assert models.status_code == 200 and models.json()["models"] == []
    assert client.get("/dashboard/models/rain").status_code == 200
