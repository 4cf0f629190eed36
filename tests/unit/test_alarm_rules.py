"""Alarm rules as written in a pipeline or a YAML file: good ones parse, bad ones are refused at
load with a message naming the rule, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor as cv
from conveyor.definition.alarms import AlarmRule, load_rules, rule, rules
from conveyor.errors import DefinitionError


def test_rules_parse_thresholds_in_their_units(tmp_path: Path) -> None:
    path = tmp_path / "alarms.yaml"
    path.write_text(
        "alarms:\n"
        "  - {name: failing, metric: failure_rate, above: 10%, window: 1m, every: 200ms}\n"
        "  - {name: slow, metric: p95_latency, step: score, above: 2s}\n"
        "  - {name: backlog, metric: queue_age, above: 10m}\n"
        "  - {name: stalled, metric: throughput, below: 1.5}\n"
        "  - {name: memory, metric: worker_memory, above: 2GB}\n"
    )
    found = load_rules(path)
    assert found[0] == AlarmRule("failing", "failure_rate", 0.1, 60.0, None, 10, 0.2)
    assert (found[1].threshold, found[1].step, found[1].window) == (2.0, "score", 300.0)
    assert found[2].threshold == 600.0
    assert found[3].above is False and found[3].breached(1.0) and not found[3].breached(2.0)
    assert found[4].threshold == 2e9
    assert not found[0].breached(None)  # no data: not firing


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"metric": "failure_rate", "above": 0.1}, "'name' must be a non-empty string"),
        ({"name": "x", "metric": "errors", "above": 1}, "'metric' must be one of failure_rate"),
        ({"name": "x", "metric": "throughput", "above": 1}, "write 'below: units per second"),
        ({"name": "x", "metric": "failure_rate", "above": 2}, "between 0 and 1"),
        ({"name": "x", "metric": "failure_rate", "above": "lots"}, "write a fraction"),
        ({"name": "x", "metric": "p95_latency", "above": "soon"}, "is not a duration"),
        ({"name": "x", "metric": "queue_age", "above": "1m", "window": "0s"}, "longer than zero"),
        ({"name": "x", "metric": "worker_memory", "above": "2 bananas"}, "write e.g. '2GB'"),
        ({"name": "x", "metric": "queue_age", "above": "1m", "treshold": 1}, "unknown keys"),
        ({"name": "x", "metric": "queue_age", "above": "1m", "min_units": 0}, "'min_units'"),
        ("failure_rate > 10%", "an alarm is a mapping"),
    ],
)
def test_bad_rules_are_refused_with_the_fix(spec: object, message: str) -> None:
    with pytest.raises(DefinitionError, match="alarm") as refused:
        rule(spec)  # type: ignore[arg-type]
    assert message in str(refused.value)


def test_names_must_be_unique_and_steps_must_exist() -> None:
    twice = {"name": "x", "metric": "queue_age", "above": "1m"}
    with pytest.raises(DefinitionError, match="repeated: \\['x'\\]"):
        rules([twice, twice])
    pipe = cv.Pipeline("p", alarms=[{"name": "s", "metric": "p95_latency", "step": "nope",
                                      "above": "1s"}])  # fmt: skip

    @pipe.step
    def real(item: cv.Item) -> int:
        return 1

    with pytest.raises(DefinitionError, match="no step 'nope' in the pipeline"):
        pipe.validate()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alarms: [", "not valid YAML"),
        ("rules: []", "expected a top-level 'alarms:' list"),
        ("alarms:\n  - {name: a, metric: nope, above: 1}", "alarms[0] 'a': 'metric' must be"),
    ],
)
def test_bad_files_are_refused_at_load(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alarms.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError) as refused:
        load_rules(path)
    assert message in str(refused.value)
    with pytest.raises(DefinitionError, match="cannot read it"):
        load_rules(tmp_path / "missing.yaml")
