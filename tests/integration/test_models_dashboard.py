"""The dashboard's model registry API over a real ledger with versions registered through
:class:`~conveyor.ml.registry.Registry` (small fitted scikit-learn models in a real artifact
store), called over real HTTP: what each endpoint answers, bad input (nothing changed), the
token, and promote / rollback from the page changing the alias's history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from httpclient import Client
from sklearn.linear_model import LinearRegression

from conveyor.interfaces.http.app import create_dashboard_app
from conveyor.ml.artifacts import ArtifactStore
from conveyor.ml.registry import Registry

API = "/dashboard/api/models"
INJECTION = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
LINEAGE = {
    "model": "rain", "format": "cloudpickle", "dataset": "weather", "data_version": "d" * 64,
    "split": {"by": "hash", "shares": {"train": 0.7, "valid": 0.15, "golden": 0.15},
              "id_column": "day"},
    "golden": {"version": "g" * 64, "rows": 2700, "artifact": "/a/golden.parquet"},
    "code_versions": {"rain": "c1", "rmse": "m1"}, "seed": 0, "trial": 3,
    "packages": {"python": "3.11", "scikit-learn": "1.5"},
}  # fmt: skip


def gate(
    passed: bool, champion: int | None, challenger: float, held: float | None
) -> dict[str, Any]:
    """A gate verdict as ml/gate.py's Verdict.as_dict() writes it: one rule on rmse."""
    delta = None if held is None else held - challenger  # rmse: lower is better
    checks = {"floor": None, "min_absolute": None if held is None else passed,
              "min_relative": None, "noise": None if held is None else passed}  # fmt: skip
    rule = {"metric": "rmse", "direction": "minimize", "challenger": challenger,
            "champion": held, "delta": delta, "relative": None if held is None else delta / held,
            "interval": None if held is None else [delta - 0.01, delta + 0.01],
            "checks": checks, "passed": passed, "floor": None, "min_absolute": 0.0,
            "min_relative": None, "noise": True, "bootstrap": "predictions"}  # fmt: skip
    return {"passed": passed, "champion": champion, "golden": {"version": "g" * 64, "rows": 2700},
            "rescored": False, "confidence": 0.95, "resamples": 1000, "seed": 0,
            "rules": [rule]}  # fmt: skip


def register(location: str, artifacts: Path) -> None:
    """Model rain: v1 (first, the gate's champion), v2 (passed, champion now, exported to
    ONNX), v3 (failed its gate); model prices: a model set of 3 groups."""
    store = ArtifactStore(artifacts)
    x = np.arange(20, dtype=float).reshape(-1, 1)

    def put(slope: float) -> str:
        return store.put_bytes(cloudpickle.dumps(LinearRegression().fit(x, slope * x.ravel())))

    with Registry(location, str(artifacts)) as reg:
        scores = {1: 0.50, 2: 0.40, 3: 0.45}
        for v, rmse in scores.items():
            held = None if v == 1 else scores[2 if v == 3 else 1]
            reg.register(
                name="rain", artifact=put(float(v)), run_id=f"run-{v}",
                lineage={**LINEAGE, "params": {"slope": float(v), "max_depth": v + 2}},
                metrics={"valid": {"rmse": rmse - 0.01, "mae": rmse / 2}, "golden": {"rmse": rmse}},
                gate=gate(v != 3, None if v == 1 else v - 1 if v == 2 else 2, rmse, held),
            )  # fmt: skip
            if v < 3:
                reg.promote("rain", v, actor="gate", who=f"run-{v}", reason="passed the gate")
        reg.add_export("rain", 2, format="onnx", details={"parity": 1.2e-7, "rows": 2700})
        reg.register(name="prices", artifact=put(9.0), kind="model_set", members=3)


def board(location: str, artifacts: Path, token: str | None = None) -> Client:
    register(location, artifacts)
    return Client(create_dashboard_app(location, token=token))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """A dashboard over a registry that the tests only read."""
    folder = tmp_path_factory.mktemp("models")
    client = board(str(folder / "ledger.db"), folder / "artifacts")
    yield client
    client.close()


@pytest.fixture
def fresh(store_path: Path, tmp_path: Path) -> Iterator[Client]:
    """A dashboard over a registry of the test's own, to change."""
    client = board(str(store_path), tmp_path / "artifacts")
    yield client
    client.close()


def moves(client: Client, query: str = "") -> list[tuple[Any, ...]]:
    body = client.get(f"{API}/rain/history{query}").json()
    return [(m["alias"], m["seq"], m["from_version"], m["to_version"], m["action"], m["actor"],
             m["who"], m["reason"], m["forced"]) for m in body["moves"]]  # fmt: skip


def test_models_lists_each_model_with_its_versions_and_aliases(client: Client) -> None:
    body = client.get(API).json()
    assert [m["name"] for m in body["models"]] == ["prices", "rain"]
    prices, rain = body["models"]
    assert (prices["kind"], prices["versions"], prices["aliases"]) == ("model_set", 1, {})
    assert (rain["kind"], rain["versions"], rain["latest"]) == ("model", 3, 3)
    assert rain["aliases"] == {"champion": 2} and rain["updated_at"] <= body["now"]
    first = client.get(f"{API}?limit=1").json()
    assert [m["name"] for m in first["models"]] == ["prices"] and first["more"]
    assert first["total"] == 2
    assert client.get(f"{API}?offset=1").json()["models"][0]["name"] == "rain"


def test_a_model_pages_its_versions_newest_first_with_metric_gate_and_aliases(
    client: Client,
) -> None:
    body = client.get(f"{API}/rain").json()
    assert body["model"]["name"] == "rain" and not body["more"]
    rows = {v["version"]: v for v in body["versions"]}
    assert list(rows) == [3, 2, 1]
    assert rows[3]["metric"] == {"name": "rmse", "valid": 0.44, "golden": 0.45}
    assert [rows[v]["passed"] for v in (3, 2, 1)] == [False, True, True]
    assert rows[2]["aliases"] == ["champion"] and rows[3]["aliases"] == []
    assert rows[2]["run_id"] == "run-2" and rows[2]["gated"]
    [champion] = body["aliases"]
    assert champion | {"since": None} == {
        "alias": "champion", "version": 2, "seq": 2, "since": None, "actor": "gate",
        "who": "run-2", "previous": 1,
    }  # fmt: skip
    page = client.get(f"{API}/rain?limit=2").json()
    assert [v["version"] for v in page["versions"]] == [3, 2] and page["more"]
    rest = client.get(f"{API}/rain?limit=2&offset=2").json()
    assert [v["version"] for v in rest["versions"]] == [1] and not rest["more"]
    sets = client.get(f"{API}/prices").json()["versions"]
    assert (sets[0]["kind"], sets[0]["members"], sets[0]["passed"]) == ("model_set", 3, None)
    assert sets[0]["metric"] == {"name": None, "valid": None, "golden": None}


def test_a_version_has_its_lineage_metrics_gate_and_exports(client: Client) -> None:
    v2 = client.get(f"{API}/rain/versions/2").json()
    assert (v2["name"], v2["version"], v2["run_id"], v2["passed"]) == ("rain", 2, "run-2", True)
    lin = v2["lineage"]
    assert (lin["dataset"], lin["data_version"], lin["golden"]["rows"]) == (
        "weather",
        "d" * 64,
        2700,
    )
    assert lin["split"]["shares"] == {"train": 0.7, "valid": 0.15, "golden": 0.15}
    assert lin["params"] == {"slope": 2.0, "max_depth": 4}
    assert lin["code_versions"] == {"rain": "c1", "rmse": "m1"} and "python" in lin["packages"]
    assert v2["metrics"] == {"valid": {"rmse": 0.39, "mae": 0.2}, "golden": {"rmse": 0.4}}
    assert v2["metric"]["name"] == "rmse" and v2["aliases"] == ["champion"]
    assert len(v2["artifact"]) == 64 and v2["format"] == "cloudpickle" and v2["latest"] == 3
    [export] = v2["exports"]
    assert (export["format"], export["details"]) == ("onnx", {"parity": 1.2e-7, "rows": 2700})
    v3 = client.get(f"{API}/rain/versions/3").json()
    [rule] = v3["gate"]["rules"]
    assert (v3["passed"], v3["gate"]["champion"], rule["metric"], rule["passed"]) == (
        False, 2, "rmse", False)  # fmt: skip
    assert rule["checks"] == {"floor": None, "min_absolute": False, "min_relative": None,
                              "noise": False}  # fmt: skip
    assert v3["exports"] == [] and v3["aliases"] == []


def test_history_is_oldest_first_bounded_and_by_alias(client: Client) -> None:
    assert moves(client) == [
        ("champion", 1, None, 1, "promote", "gate", "run-1", "passed the gate", False),
        ("champion", 2, 1, 2, "promote", "gate", "run-2", "passed the gate", False),
    ]
    last = client.get(f"{API}/rain/history?limit=1").json()
    assert [m["seq"] for m in last["moves"]] == [2] and last["more"] and last["total"] == 2
    assert moves(client, "?alias=champion") == moves(client)
    assert moves(client, "?alias=staging") == []


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        (f"{API}/rian", 404, "did you mean 'rain'"),
        (f"{API}/nosuch/history", 404, "no model 'nosuch'"),
        (f"{API}/rain/versions/9", 404, "9"),
        (f"{API}/nosuch/versions/1", 404, "nosuch"),
        (f"{API}/rain/versions/abc", 422, "version"),
        (f"{API}/rain/versions/0", 422, "version"),
        (f"{API}/rain%20x", 422, "name"),
        (f"{API}/..", 422, "name"),
        (f"{API}/%2e%2e/versions/1", 422, "name"),
        (f"{API}/rain%2F..%2F..", 404, "Not Found"),
        (f"{API}/{'r' * 200}", 422, "name"),
        (f"{API}/rain/history?alias=Bad%20Alias", 422, "alias"),
        (f"{API}/rain/history?limit=0", 422, "limit"),
        (f"{API}/rain?limit=100000", 422, "limit"),
        (f"{API}/rain?offset=-1", 422, "offset"),
        (f"{API}?limit=x", 422, "limit"),
    ],
)
def test_bad_reads_get_clear_answers(client: Client, path: str, status: int, says: str) -> None:
    answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("rain/promote", {"version": "x"}, 422, "version"),
        ("rain/promote", {}, 422, "version"),
        ("rain/promote", {"version": 1, "alias": "Bad Alias"}, 422, "alias"),
        ("rain/promote", {"version": 1, "reason": "x" * 5000}, 422, "reason"),
        ("rain/promote", {"version": 1, "alias": "latest"}, 422, "reserved"),
        ("rain/promote", {"version": 9}, 404, "9"),
        ("rain/promote", {"version": 2}, 422, "already"),
        ("rain/promote", {"version": 3}, 422, "failed its gate"),
        ("rain/promote", {"version": 1, "seen": 1}, 409, "moved meanwhile"),
        ("rian/promote", {"version": 1}, 404, "did you mean 'rain'"),
        ("rain/rollback", {"alias": "staging"}, 404, "staging"),
        ("rain/rollback", {"seen": 7}, 409, "moved meanwhile"),
        ("rain/rollback", {"alias": 3}, 422, "alias"),
        ("r%20x/rollback", {}, 422, "name"),
    ],
)
def test_bad_moves_are_refused_and_change_nothing(
    client: Client, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    before = moves(client)
    answer = client.post(f"{API}/{path}", json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]
    assert moves(client) == before


def test_a_rollback_with_no_previous_holder_is_refused(fresh: Client) -> None:
    assert (
        fresh.post(f"{API}/rain/promote", json={"version": 1, "alias": "staging"}).status_code
        == 200
    )
    refused = fresh.post(f"{API}/rain/rollback", json={"alias": "staging"})
    assert refused.status_code == 422 and "no previous holder" in refused.json()["detail"]
    assert [m[:4] for m in moves(fresh, "?alias=staging")] == [("staging", 1, None, 1)]


def test_promote_and_rollback_from_the_page_append_to_the_history(
    store_location: str, tmp_path: Path
) -> None:
    client = board(store_location, tmp_path / "artifacts")
    try:
        wanted = {"version": 3, "alias": "champion", "reason": INJECTION, "force": True, "seen": 2}
        forced = client.post(f"{API}/rain/promote", json=wanted)
        assert forced.status_code == 200, forced.text
        move = forced.json()["move"]
        assert (move["from_version"], move["to_version"], move["forced"]) == (2, 3, True)
        assert (move["actor"], move["who"], move["reason"]) == ("user", "dashboard", INJECTION)
        rain = client.get(f"{API}/rain").json()
        assert rain["aliases"][0] | {"since": 0} == {
            "alias": "champion", "version": 3, "seq": 3, "since": 0, "actor": "user",
            "who": "dashboard", "previous": 2}  # fmt: skip
        back = client.post(f"{API}/rain/rollback", json={"reason": "v3 is worse live", "seen": 3})
        assert back.status_code == 200, back.text
        assert moves(client)[2:] == [
            ("champion", 3, 2, 3, "promote", "user", "dashboard", INJECTION, True),
            ("champion", 4, 3, 2, "rollback", "user", "dashboard", "v3 is worse live", False),
        ]
        again = client.post(f"{API}/rain/rollback")  # no body: champion, back to v1
        assert again.json()["move"]["to_version"] == 1
        assert client.get(API).json()["models"][1]["aliases"] == {"champion": 1}
        stale = client.post(f"{API}/rain/rollback", json={"seen": 4})
        assert stale.status_code == 409 and "to 1 by dashboard" in stale.json()["detail"]
        assert len(moves(client)) == 5
    finally:
        client.close()


def test_with_a_token_every_model_call_needs_it_and_the_pages_do_not(
    store_path: Path, tmp_path: Path
) -> None:
    client = board(str(store_path), tmp_path / "artifacts", token="s3cret")
    right = {"Authorization": "Bearer s3cret"}
    wrong = {"Authorization": "Bearer nope"}
    try:
        for path in (API, f"{API}/rain", f"{API}/rain/versions/1", f"{API}/rain/history"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers=wrong).status_code == 401
            assert client.get(path, headers=right).status_code == 200
        for path, body in (("promote", {"version": 1, "alias": "staging"}), ("rollback", {})):
            assert client.post(f"{API}/rain/{path}", json=body).status_code == 401
        assert moves_with(client, right) == 2  # nothing moved without the token
        promoted = client.post(f"{API}/rain/promote", json={"version": 1, "alias": "staging"},
                               headers=right)  # fmt: skip
        assert promoted.status_code == 200 and moves_with(client, right) == 3
        for page in ("/dashboard/models", "/dashboard/models/rain", "/dashboard/models/rain/3"):
            answer = client.get(page)
            assert answer.status_code == 200 and "text/html" in answer.headers["content-type"]
            assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert client.get("/dashboard/static/models.js").status_code == 200
    finally:
        client.close()


def moves_with(client: Client, headers: dict[str, str]) -> int:
    return int(client.get(f"{API}/rain/history", headers=headers).json()["total"])
