"""The Ray executor's decisions that need no Ray: which steps run as tasks or on actors, what
they ask Ray for, how many run at once, and what happens without Ray installed. The runs
themselves are in tests/integration/test_executor_contract.py and
tests/acceptance/test_ray_cluster.py."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

import conveyor as cv
from conveyor.executors.ray import RaySession, Shape, _shipped, ray_lanes, shape_of
from conveyor.scheduling.lanes import check_backend

pipe = cv.Pipeline("shapes")


@pipe.resource
def tokenizer() -> str:
    return "tok"


@pipe.resource
def model(tokenizer: str) -> str:
    return f"model+{tokenizer}"


@pipe.resource
def unused() -> str:
    return "never shipped"


@pipe.step
def text(item: cv.Item) -> str:
    return str(item["text"])


@pipe.step(cpus=2, memory="1GiB")
def heavy(text: str) -> int:
    return len(text)


@pipe.step(gpus=1)
def embed(text: str, model: str) -> str:
    return model + text


@pipe.step(timeout="5s")
def bounded(text: str) -> str:
    return text


def test_steps_with_resources_or_a_timeout_run_on_actors_the_rest_as_tasks() -> None:
    nodes = pipe.graph.nodes
    assert shape_of(nodes["text"]) == Shape(actors=False)
    assert shape_of(nodes["heavy"]) == Shape(actors=False, cpus=2.0, memory=1024**3)
    assert shape_of(nodes["embed"]) == Shape(actors=True, gpus=1.0)
    assert shape_of(nodes["bounded"]) == Shape(actors=True)


def test_step_options_map_to_ray_resource_requests() -> None:
    assert Shape(actors=False).request() == {}
    assert Shape(actors=True, cpus=0.5, gpus=1, memory=2_000_000_000).request() == {
        "num_cpus": 0.5,
        "num_gpus": 1,
        "memory": 2_000_000_000,
    }


def test_workers_get_only_their_steps_and_the_resources_those_use() -> None:
    graph, factories = _shipped(pipe.graph, pipe.resources, ["embed"])
    assert list(graph.nodes) == ["embed"] and graph.order == ("embed",)
    assert sorted(factories) == ["model", "tokenizer"]  # model takes tokenizer; unused stays


def fake_ray(nodes: list[dict[str, float]]) -> Any:
    """A stand-in ``ray`` module that is already connected to a cluster of ``nodes``."""
    module = types.ModuleType("ray")
    module.is_initialized = lambda: True  # type: ignore[attr-defined]
    module.nodes = lambda: [{"Alive": True, "Resources": n} for n in nodes]  # type: ignore[attr-defined]
    return module


def test_each_shape_gets_a_lane_sized_to_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = [{"CPU": 4.0, "GPU": 1.0, "memory": 8e9}, {"CPU": 4.0, "memory": 8e9}]
    monkeypatch.setitem(sys.modules, "ray", fake_ray(cluster))
    lanes = ray_lanes(pipe.graph, pipe.resources, list(pipe.graph.order))
    assert sorted(lanes.values()) == [["bounded"], ["embed"], ["heavy"], ["text"]]
    session = next(iter(lanes))._session  # type: ignore[attr-defined]
    session.acquire()
    assert session.sizes == {
        Shape(actors=False): 8,  # one CPU each
        Shape(actors=False, cpus=2.0, memory=1024**3): 4,
        Shape(actors=True, gpus=1.0): 1,  # one GPU in the cluster
        Shape(actors=True): 8,  # actors that hold no CPU while they run
    }


def test_actors_that_reserve_cpus_leave_room_for_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", fake_ray([{"CPU": 2.0}]))
    tasks, reserving = Shape(actors=False), Shape(actors=True, cpus=1.0)
    session = RaySession(address=None, workers=None, shapes=[tasks, reserving])
    session.acquire()
    # two actors holding both CPUs would starve the tasks whose output they wait for
    assert session.sizes == {tasks: 2, reserving: 1}


def test_a_shape_no_node_can_hold_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", fake_ray([{"CPU": 2.0}, {"CPU": 2.0}]))
    session = RaySession(address=None, workers=None, shapes=[Shape(actors=False, cpus=4.0)])
    with pytest.raises(cv.UsageError) as excinfo:
        session.acquire()
    assert str(excinfo.value).startswith(
        "steps asking for cpus=4 fit on no node of the Ray cluster (its nodes have CPU=2 GPU=0"
    )
    assert str(excinfo.value).endswith("or add a node that has them")


def test_without_ray_installed_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes ``import ray`` fail
    with pytest.raises(cv.UsageError) as excinfo:
        check_backend("ray", None, None)
    assert str(excinfo.value) == (
        "--executor ray needs Ray, which is not installed; install it with "
        "pip install 'conveyor[ray]'"
    )
    check_backend("local", None, None)  # the local executor does not need it
