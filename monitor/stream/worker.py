"""Start a production worker: settings, a preflight connection, topics, then the Faust loop.

The preflight connects once exactly as every client will (TLS, SASL) so that a wrong CA,
certificate or password stops the worker at start with one clear line and exit status 2,
never a traceback or a Faust restart loop (monitor.kafka.security.describe_failure).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

import uvloop

from monitor.clinical.units import load_ucum_registry
from monitor.kafka.security import (
    KafkaConnectError,
    KafkaSecurityError,
    aiokafka_security_kwargs,
    check_connection,
)
from monitor.kafka.topics import TopicError, create_topics
from monitor.settings import MonitorSettings

log = logging.getLogger("monitor.worker")

PREFLIGHT_WAIT_S = 10.0  # per broker address

# Libraries that log whole messages (keys and values: patient data) at DEBUG.
PAYLOAD_LOGGERS = ("aiokafka", "faust.topics", "faust.transport")


def quiet_payload_loggers(level: int) -> None:
    """Keep message-logging libraries at INFO or above, whatever level the operator asks for."""
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, level))


# The cyclic garbage collector's first-generation threshold (CPython's default is 700
# allocations). Every full collection walks every tracked object, and the decoded states the
# worker caches (``monitor.stream.state_cache.StateCache``: entries and readings are named
# tuples, which the collector never untracks as it does plain tuples) make those walks long:
# 91-140 ms pauses every few seconds at 500 results/s in the latency benchmark, 35-47 ms once
# the objects of start-up are frozen (measured 2026-11-30). The higher threshold makes young
# collections rarer; it did not measurably change how often the full ones came (5 against 6
# in a 20 s run).
GC_GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Collect once, then exclude every object alive now (modules, the UCUM registry, the app)
    from later collections (``gc.freeze``), and collect young objects less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


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

    try:
        security = aiokafka_security_kwargs(settings)
    except KafkaSecurityError as exc:
        print(f"cbc-monitor: invalid setting {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    monitor = MonitorApp(settings)
    # uvloop moves Faust's per-message bookkeeping about half again as fast (measured).
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(
            check_connection(settings.bootstrap_servers, security, wait_s=PREFLIGHT_WAIT_S)
        )
    except KafkaConnectError as exc:
        print(f"cbc-monitor: {exc}", file=sys.stderr)
        return 2
    bootstrap = ",".join(settings.bootstrap_servers)
    try:
        loop.run_until_complete(
            asyncio.wait_for(
                create_topics(
                    bootstrap,
                    monitor.topic_partitions,
                    settings.replication_factor,
                    security,
                    configs=monitor.topic_configs,
                ),
                timeout=60,
            )
        )
    except (TopicError, TimeoutError, OSError) as exc:
        print(f"cbc-monitor worker: cannot prepare topics on {bootstrap}: {exc}", file=sys.stderr)
        return 1
    # The UCUM parser's registry takes about 1.5 s to build: before consuming, not on the event
    # loop at the first unit the alias table lacks (monitor.clinical.units).
    load_ucum_registry()
    settle_heap()
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
