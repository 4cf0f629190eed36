"""The Celery peer of ``bench/peers.py``: an app whose tasks are the shared units of ``_units.py``.

The benchmark starts real ``celery worker`` processes on this module (``celery -A _celery_app
worker``, with ``bench/`` on ``PYTHONPATH``) and submits from its own child process. Redis is the
broker and the result backend, on a database of its own: ``PEERS_REDIS_URL`` (default
``redis://127.0.0.1:6379/12``), the only database the benchmark flushes.

The I/O unit goes to its own queue, :data:`IO_QUEUE`, served by a worker with a thread pool
(Celery's I/O-friendly mode); the others go to :data:`QUEUE`, served by a prefork worker.
"""

from __future__ import annotations

import os

import _units
from celery import Celery

REDIS_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379/12")
QUEUE = "peers"
IO_QUEUE = "peers-io"

app = Celery("conveyor_peers", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_routes={"peers.wait": {"queue": IO_QUEUE}},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Results are read once by the benchmark, which flushes the database afterwards anyway.
    result_expires=3600,
)

# The very functions every other backend runs, registered under short names.
noop = app.task(name="peers.noop")(_units.noop)
burn = app.task(name="peers.burn")(_units.burn)
wait = app.task(name="peers.wait")(_units.wait)
