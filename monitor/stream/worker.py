"""Start a production worker: settings, topics, then the Faust worker loop."""

from __future__ import annotations

import asyncio
import logging
import sys

import uvloop

from monitor.broker import BrokerError, create_topics
from monitor.settings import MonitorSettings

log = logging.getLogger("monitor.worker")

# Libraries that log whole messages (keys and values: patient data) at DEBUG.
PAYLOAD_LOGGERS = ("aiokafka", "faust.topics", "faust.transport")


def quiet_payload_loggers(level: int) -> None:
    """Keep message-logging libraries at INFO or above, whatever level the operator asks for."""
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, level))


def run_worker(settings: MonitorSettings) -> int:
    """Create the topics with their partition counts, then run the worker until stopped."""
    from faust.worker import Worker

    from monitor.stream.app import MonitorApp

    class MonitorWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Faust's terminal spinner lowers the root logger to DEBUG to spin on every record,
            # which builds records (with message payloads) on every send. No spinner here.
            self.spinner = None
            quiet_payload_loggers(level)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    monitor = MonitorApp(settings)
    # uvloop moves Faust's per-message bookkeeping about half again as fast (measured).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    bootstrap = ",".join(settings.bootstrap_servers)
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                create_topics(bootstrap, monitor.topic_partitions, settings.replication_factor),
                timeout=60,
            )
        )
    except (BrokerError, TimeoutError, OSError) as exc:
        print(f"cbc-monitor worker: cannot prepare topics on {bootstrap}: {exc}", file=sys.stderr)
        return 1
    worker = MonitorWorker(
        monitor.app,
        loop=loop,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=True,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
