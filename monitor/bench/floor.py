"""The framework floor (``make bench``): a minimal Faust agent beside the worker.

The same Faust settings as the worker (``monitor.stream.app.faust_settings``, from the same
``MONITOR_*`` variables), the same transport, the same input topic and messages, and one table
write per message (``table[key] = value``, a message at a time, as Faust documents it), nothing
else: no parsing, no detection, no alert. Its throughput over the bare aiokafka pass-through
shows how much of the gap is Faust's table path and per-event delivery, and how much is the
monitor's own work (DESIGN.md, "Where the time goes").

Run as a process like the worker: ``python -m monitor.bench.floor`` (``FloorProcess``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust
import uvloop
from faust.web import Request, Response, View

from monitor.kafka.topics import create_topics
from monitor.local.processes import WorkerProcess
from monitor.settings import MonitorSettings, load_settings
from monitor.stream.app import TABLE_NAME, monitor_faust_app


def floor_app(settings: MonitorSettings) -> faust.App:
    """The minimal agent: each input message is written to a Faust table under its key."""
    app = monitor_faust_app(settings)
    table = app.Table(
        TABLE_NAME, key_type=bytes, value_type=bytes, partitions=settings.partitions, default=None
    )
    topic = app.topic(
        settings.results_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    async def store(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            table[event.key] = event.value
            yield None

    app.agent(topic, name="floor", concurrency=1)(store)

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        ready = bool(app.tables.actives_ready) and not app.rebalancing
        return web.json({"ready": ready}, status=200 if ready else 503)

    return app


def main() -> int:
    from faust.worker import Worker

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = floor_app(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # as the worker
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    partitions = {settings.results_topic: settings.partitions}
    loop.run_until_complete(create_topics(",".join(settings.bootstrap_servers), partitions))
    worker = Worker(app, loop=loop, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


class FloorProcess(WorkerProcess):
    """The minimal agent as a child process, configured and watched like a worker."""

    def __init__(self, name: str, broker_url: str, data_dir: Path, **kwargs: Any) -> None:
        super().__init__(name, broker_url, data_dir, **kwargs)
        self.argv = [sys.executable, "-m", "monitor.bench.floor"]


if __name__ == "__main__":
    sys.exit(main())
