"""Notifications: POST a JSON event to webhooks when a run finishes, when its failure rate
crosses a threshold, and when units are dead-lettered (grouped, at most once a minute).

Delivery happens on a background thread with retries; a failure to deliver is logged and never
affects the run."""

from __future__ import annotations

import abc
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from conveyor.core.units import RunState, StepStats, UnitState
from conveyor.scheduling.hooks import Hooks, RunContext
from conveyor.store import Store

log = logging.getLogger("conveyor.observability.notify")

FORMATS = ("json", "slack")


class Notifier(abc.ABC):
    """Sends events somewhere; must not raise into the caller."""

    @abc.abstractmethod
    def send(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for delivery."""

    def close(self, timeout: float = 10.0) -> None:  # noqa: B027 - an optional hook
        """Deliver what is queued (waiting at most ``timeout`` seconds) and stop."""


class MemoryNotifier(Notifier):
    """Keeps events in a list: for tests and for embedding."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class WebhookNotifier(Notifier):
    """POSTs each event as JSON (or as a Slack-compatible ``{"text": ...}`` body) to ``url``,
    retrying failed deliveries with backoff."""

    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        attempts: int = 3,
        backoff: float = 0.5,
        timeout: float = 5.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            from conveyor.errors import UsageError

            raise UsageError(f"--notify {url!r}: a webhook must be an http:// or https:// URL")
        if format not in FORMATS:
            from conveyor.errors import UsageError

            raise UsageError(f"--notify-format {format!r}: choose one of {', '.join(FORMATS)}")
        self.url = url
        self.format = format
        self._attempts = attempts
        self._backoff = backoff
        self._timeout = timeout
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._deliver_all, name="conveyor-notify", daemon=True
        )
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _deliver_all(self) -> None:
        while (event := self._queue.get()) is not None:
            self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        body = slack_body(event) if self.format == "slack" else event
        data = json.dumps(body, default=str).encode()
        for attempt in range(1, self._attempts + 1):
            request = urllib.request.Request(
                self.url, data=data, headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    if response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = str(getattr(exc, "reason", exc))
            if attempt < self._attempts:
                time.sleep(self._backoff * 2 ** (attempt - 1))
        log.warning(
            "could not deliver the %s notification to %s after %d attempts: %s",
            event.get("event"), self.url, self._attempts, problem,
        )  # fmt: skip


def slack_body(event: dict[str, Any]) -> dict[str, str]:
    """A one-message summary of ``event`` that Slack-compatible webhooks display."""
    name = event.get("event")
    run = f"run {event.get('run')} of {event.get('pipeline')}"
    if name == "run.finished":
        counts = ", ".join(f"{n} {state}" for state, n in sorted(event["counts"].items()))
        text = f"{run} {event['state']} in {event['seconds']:.1f}s: {counts}"
    elif name == "units.dead":
        parts = [f"{g['count']}x {g['step']}: {g['error_type']}: {g['message']}"
                 for g in event["groups"]]  # fmt: skip
        text = f"{run}: {event['count']} unit(s) dead-lettered\n" + "\n".join(parts)
    elif name == "run.failure_rate":
        text = (
            f"{run}: failure rate {event['rate']:.0%} crossed {event['threshold']:.0%} "
            f"({event['dead']} dead of {event['finished']} finished)"
        )
    else:
        text = f"{run}: {name}"
    return {"text": text}


class NotifyingHooks(Hooks):
    """Turns a run's progress into notifications: dead-lettered units grouped and sent at most
    every ``interval`` seconds, and one event when the run finishes. (The run's failure rate
    crossing a threshold is an alarm rule: :data:`conveyor.definition.alarms.DEFAULT_RULES`.)
    When this coordinator stops, what the notifiers still hold is delivered."""

    def __init__(self, notifiers: Sequence[Notifier], store: Store, *, interval: float = 60.0):
        self.notifiers = list(notifiers)
        self.store = store
        self.interval = interval
        self._run = ""
        self._pipeline = ""
        self._pending_dead = 0
        self._last_sent = 0.0
        self._started = time.monotonic()

    def run_started(self, run: RunContext) -> None:
        """Remember the run."""
        self._run, self._pipeline = run.run_id, run.pipeline
        self._started = time.monotonic()
        self._last_sent = time.monotonic() - self.interval

    def units_advanced(self, step: str, state: UnitState, count: int) -> None:
        """Count dead units; send them once the interval has passed."""
        if state is UnitState.DEAD:
            self._pending_dead += count
        if self._pending_dead and time.monotonic() - self._last_sent >= self.interval:
            self._send_dead()

    def run_finished(self, run: RunContext, state: RunState, stats: list[StepStats]) -> None:
        """Send what is left and the run's end."""
        if self._pending_dead:
            self._send_dead()
        counts: dict[str, int] = {}
        for stat in stats:
            for unit_state, n in stat.counts.items():
                counts[unit_state] = counts.get(unit_state, 0) + n
        self._send({
            "event": "run.finished", "state": state.value, "counts": counts,
            "seconds": time.monotonic() - self._started,
            "errors": self.store.error_groups(self._run, limit=5),
        })  # fmt: skip

    def run_stopped(self, run: RunContext) -> None:
        """Deliver what the notifiers still hold, and stop them."""
        for notifier in self.notifiers:
            notifier.close()

    def _send_dead(self) -> None:
        groups = self.store.error_groups(self._run, limit=10)
        self._send({"event": "units.dead", "count": self._pending_dead, "groups": groups})
        self._pending_dead = 0
        self._last_sent = time.monotonic()

    def _send(self, event: dict[str, Any]) -> None:
        event = {**event, "run": self._run, "pipeline": self._pipeline, "at": time.time()}
        for notifier in self.notifiers:
            try:
                notifier.send(event)
            except Exception:  # a notifier must never break a run
                log.exception("notifier %r failed", notifier)
