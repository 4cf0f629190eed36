"""Notifications delivered to a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from webhooks import Receiver

import conveyor as cv
from conveyor.errors import DefinitionError, UsageError
from conveyor.interfaces.api import run_pipeline
from conveyor.observability.notify import WebhookNotifier, slack_body

pipe = cv.Pipeline("notified")


@pipe.step
def check(item: cv.Item) -> int:
    if item["value"] % 3 == 0:
        raise ValueError(f"multiple of three: {item['value']}")
    return int(item["value"])


def test_a_run_with_failures_notifies_dead_units_rate_and_end(
    receiver: Receiver, store_path: Path
) -> None:
    report = run_pipeline(
        pipe, [{"value": i} for i in range(60)], store=store_path, workers=0,
        notify=[receiver.url],
    )  # fmt: skip
    assert report.state is cv.RunState.COMPLETED_WITH_ERRORS
    events = receiver.events()
    assert events.count("run.failure_rate") == 1
    assert events.count("run.finished") == 1 and events[-1] == "run.finished"
    assert "units.dead" in events
    dead = [b for b in receiver.bodies if b["event"] == "units.dead"]
    assert sum(b["count"] for b in dead) == 20
    [group] = dead[-1]["groups"]  # 20 failures, one problem
    assert (group["step"], group["error_type"]) == ("check", "ValueError")
    assert group["message"].startswith("multiple of three")
    end = receiver.bodies[-1]
    assert end["run"] == report.run_id and end["pipeline"] == "notified"
    assert end["counts"] == {"done": 40, "dead": 20}


def test_deliveries_are_retried(store_path: Path) -> None:
    flaky = Receiver(fail_first=2)
    try:
        notifier = WebhookNotifier(flaky.url, backoff=0.01)
        notifier.send({"event": "run.finished", "run": "r", "pipeline": "p"})
        notifier.close()
        assert flaky.requests == 3 and flaky.events() == ["run.finished"]
    finally:
        flaky.server.shutdown()
        flaky.server.server_close()


def test_an_unreachable_webhook_never_breaks_the_run(
    store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    notifier = WebhookNotifier(f"http://127.0.0.1:{port}/", attempts=2, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="conveyor.observability.notify"):
        notifier.send({"event": "run.finished"})
        notifier.close()
    assert "could not deliver the run.finished notification" in caplog.text


def test_the_pipeline_setting_and_the_slack_format(receiver: Receiver, store_path: Path) -> None:
    quiet = cv.Pipeline("quiet", notify=receiver.url)

    @quiet.step
    def ok(item: cv.Item) -> int:
        return 1

    run_pipeline(quiet, [{"value": 1}], store=store_path, workers=0, notify_format="slack")
    assert receiver.bodies[-1]["text"].startswith("run ")
    assert "quiet completed" in receiver.bodies[-1]["text"]
    text = slack_body({"event": "run.failure_rate", "run": "r", "pipeline": "p", "rate": 0.25,
                       "threshold": 0.1, "dead": 5, "finished": 20})["text"]  # fmt: skip
    assert text == "run r of p: failure rate 25% crossed 10% (5 dead of 20 finished)"


def test_bad_webhooks_are_refused() -> None:
    with pytest.raises(DefinitionError, match="must be an http"):
        cv.Pipeline("p", notify="ftp://example/hook")
    with pytest.raises(UsageError, match="must be an http"):
        WebhookNotifier("hooks.example")
    with pytest.raises(UsageError, match="choose one of json, slack"):
        WebhookNotifier("http://127.0.0.1:9/", format="xml")
