"""The Faust worker: topics, the patient table, the agents, and the web endpoints.

Thin by design: every decision is made in ``ResultProcessor`` and the clinical core; this module
wires them to Kafka. Built per call (``MonitorApp(settings)``), not at import, so tests can make
a fresh app each time (DESIGN.md: module-level tables keep state across tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.types import TP, Message
from faust.web import Request, Response, View
from mode import CrashingSupervisor

from monitor.clinical.stored_state import load_state
from monitor.dashboard.routes import install_dashboard, reveals_patient_ids
from monitor.kafka.security import faust_credentials
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.settings import MonitorSettings
from monitor.stream.batch import BatchHandler, Item, PendingStates, StateWrite
from monitor.stream.batcher import Batcher
from monitor.stream.locks import KeyedLocks
from monitor.stream.processor import Origin, ResultProcessor, Send
from monitor.stream.transport import MonitorFaustApp

log = logging.getLogger("monitor.worker")

TABLE_NAME = "patients"
# After a failed batch: seconds for a graceful stop before the process exits anyway, and the
# exit status then (EX_SOFTWARE).
FAIL_STOP_GRACE_S = 30.0
FAIL_STOP_EXIT = 70


def faust_settings(settings: MonitorSettings) -> dict[str, Any]:
    store = "rocksdb://" if settings.store == "rocksdb" else "memory://"
    return {
        "broker": settings.broker_url,
        # TLS / SASL for every Faust client (monitor.kafka.security).
        "broker_credentials": faust_credentials(settings),
        "store": store,
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        # Other workers proxy /patients/{id} here: advertise an address they can reach.
        "canonical_url": f"http://{_advertised_host(settings.web_host)}:{settings.web_port}",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        # The embedded broker has no transactions; the detector is built for at-least-once.
        "processing_guarantee": "at_least_once",
        "consumer_auto_offset_reset": "earliest",
        "broker_commit_interval": 1.0,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(1.0, settings.session_timeout / 3),
        "broker_rebalance_timeout": settings.session_timeout,
        "producer_linger": settings.producer_linger,
        "producer_max_batch_size": settings.producer_max_batch_bytes,
        "broker_max_poll_records": settings.broker_max_poll_records,
        "stream_buffer_maxsize": settings.stream_buffer_maxsize,
        "table_key_index_size": settings.table_key_index_size,
        # Faust's /table/{name}/{key}/ would serve a patient's stored state with no token.
        "web_tables_enabled": False,
        "autodiscover": False,
        "web_in_thread": False,
    }


def monitor_faust_app(settings: MonitorSettings) -> MonitorFaustApp:
    """The Faust app with the worker's settings and transport (``monitor.stream.transport``)."""
    app = MonitorFaustApp(settings.app_id, **faust_settings(settings))
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.end_offsets_per_batch = settings.end_offsets_per_batch
    return app


def _advertised_host(bind: str) -> str:
    if bind in ("0.0.0.0", "::", ""):
        import socket

        return socket.gethostname()
    return bind


def lag_by_topic(
    topics: Iterable[str],
    assignment: Iterable[Any],
    end_of: Callable[[Any], int | None],
    committed_of: Callable[[Any], int | None],
) -> dict[str, int]:
    """Consumer lag per input topic over the assigned partitions: end offset (from the last
    fetch; unknown before one) minus committed offset (none yet: the group starts at 0)."""
    lag = dict.fromkeys(topics, 0)
    for tp in assignment:
        if tp.topic in lag:
            end = end_of(tp)
            if end is not None:
                lag[tp.topic] += max(0, end - (committed_of(tp) or 0))
    return lag


def _item(event: faust.EventT[bytes]) -> Item:
    message = event.message
    origin = Origin(message.topic, message.partition, message.offset, message.timestamp or None)
    return Item(event.value, event.key, origin)


def _changelog_event(app: faust.App, topic: str, write: StateWrite, offset: int) -> faust.Event:
    """A state write as the changelog record it became (what recovery would read back)."""
    message = Message(
        topic, write.partition, offset, time.time(), 0, None, write.key, write.value, None,
        tp=TP(topic, write.partition),
    )  # fmt: skip
    return faust.Event(app, write.key, write.value, None, message)


class MonitorApp:
    def __init__(self, settings: MonitorSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.app = monitor_faust_app(settings)
        raw: dict[str, Any] = {
            "key_type": bytes,
            "value_type": bytes,
            "key_serializer": "raw",
            "value_serializer": "raw",
            "partitions": settings.partitions,
        }
        self.table = self.app.Table(
            TABLE_NAME,
            # bytes in and out: Faust then uses the raw codec (it picks codecs from these types).
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            default=None,
        )
        # The processor reads and writes states through the batch's pending writes. (Reading
        # the table's store, ``table.data``, directly would save a lookup, but creating the
        # store before the app starts left the table unable to stop: measured and dropped.)
        self.states = PendingStates(self.table)
        self.processor = ResultProcessor(
            settings, self.metrics, self.states, table_epoch=self._table_epoch
        )
        # One batch at a time per patient over every agent (monitor.stream.locks).
        self.batches = BatchHandler(
            self.processor, self.states, self._publish, self._store_states, KeyedLocks()
        )
        # Every input topic (results, HL7 v2, FHIR, treatments, vitals and their by-patient
        # twins) gets an agent; all that write the table share its partition count.
        self._topics = {
            name: self.app.topic(name, **raw)
            for name in (
                *self.processor.feeds,
                settings.alerts_topic,
                settings.dlq_topic,
                settings.summaries_topic,
            )
        }
        for name in self.processor.feeds:
            # A batch that failed after planning must stop the worker: a restarted agent would go
            # on and acknowledge later offsets past it (docs/research/faust-batching.md).
            self.app.agent(
                self._topics[name],
                name=f"consume-{name}",
                concurrency=1,
                supervisor_strategy=CrashingSupervisor,
            )(self._consume)
        self._counted_assignment: frozenset[Any] | None = None
        self.failure: str | None = None  # the exception class of a failed batch
        self.app.timer(interval=2.0)(self._refresh_gauges_safely)
        self._add_web_routes()
        # The lab-ops page at /: its routes and the task folding the alert topic into its view.
        self.dashboard, self.watchlist = install_dashboard(
            self.app, settings, self.table, self.processor.detector.settings.default_lln
        )

    @property
    def topic_partitions(self) -> dict[str, int]:
        """Topics to create before the agents start, with their partition counts (DESIGN.md)."""
        return {name: self.settings.partitions for name in self._topics}

    @property
    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs to create with: the summaries topic keeps each patient's latest
        summary only, and a tombstone removes the patient (where the broker supports it)."""
        return {self.settings.summaries_topic: {"cleanup.policy": "compact"}}

    def ready(self) -> bool:
        """True once the tables of the assigned partitions are recovered and no rebalance runs."""
        return bool(self.app.tables.actives_ready) and not self.app.rebalancing

    def _table_epoch(self) -> int | None:
        """The table's epoch for the state cache (``monitor.stream.state_cache.TableEpoch``).

        Only this worker's batches write the table partitions it processes; a changelog recovery
        (which Faust runs during a rebalance) and standby replicas (which write partitions it does
        not process until a rebalance) are the other writers. The epoch is the rebalance count,
        and unknown (None) unless ``ready``: while a rebalance or its recovery runs
        (``app.rebalancing`` is set when the consumer's first revocation callback starts and
        cleared when recovery has ended)."""
        return self.app.rebalancing_count if self.ready() else None

    # --- the agents ------------------------------------------------------------------------

    async def _consume(self, stream: faust.StreamT[bytes]) -> None:
        """Hand the stream's events on in natural batches (``monitor.stream.batcher``: what
        arrived while the last batch was handled, at most ``batch_max_messages``) and
        acknowledge each batch only once it is handled.

        The events come from ``stream.noack()``, which leaves the acknowledgements to us.
        """

        async def handle(events: list[faust.EventT[bytes]]) -> None:
            try:
                await self.batches.handle([_item(event) for event in events])
            except (Exception, asyncio.CancelledError) as exc:
                # A cancellation is a failure too unless the agent is stopping (the batcher
                # cancels its task on leaving).
                if not batcher.closing:
                    self._fail_stop(exc)
                raise
            for event in events:
                await stream.ack(event)

        batcher = Batcher(
            handle,
            max_size=self.settings.batch_max_messages,
            linger_s=self.settings.batch_linger_ms / 1000,
        )
        async with batcher:
            # ``noack`` is on faust.Stream, not on its StreamT protocol (faust-streaming 0.15.3).
            manual = cast(faust.Stream[bytes], stream).noack()
            async for event in manual.events():
                await batcher.add(event)

    def _fail_stop(self, exc: BaseException) -> None:
        """A batch failed after planning (the producer or the store refused): stop the worker
        so that its partitions move and the batch is redelivered, never acknowledged past.

        Faust's ``CrashingSupervisor`` stops the app's services but leaves the process running
        (seen with faust-streaming 0.15.3), so the health endpoints turn 503 and the worker
        asks itself to stop (SIGTERM, as an orchestrator would), and exits at once if that has
        not ended it within ``FAIL_STOP_GRACE_S``.
        """
        self.failure = type(exc).__name__
        log.critical(
            "a batch failed after planning (%s); stopping the worker, its input is redelivered",
            self.failure,
        )
        os.kill(os.getpid(), signal.SIGTERM)
        asyncio.get_running_loop().call_later(FAIL_STOP_GRACE_S, os._exit, FAIL_STOP_EXIT)

    def health(self) -> tuple[int, dict[str, str]]:
        """``/healthz``: 200 alive, or 503 once a batch failed (the process is stopping)."""
        if self.failure is not None:
            return 503, {"status": "failed", "error_class": self.failure}
        return 200, {"status": "alive"}

    async def _store_states(self, writes: list[StateWrite]) -> None:
        """Write patient states to the table: each one changelog record, all acknowledged at
        once, then into the local store with their changelog offsets, as Faust's recovery
        applies a changelog (``Collection.apply_changelog_batch``).

        A Faust table refuses ``table[key] = value`` outside the iteration of a stream, and a
        batch is handled after it; the table's changelog topic and ``apply_changelog_batch``
        are its public parts that a write is made of (faust/tables/base.py ``send_changelog``,
        ``_on_changelog_sent``). The store then holds the state at the same offset a recovery
        from the changelog would give it.
        """
        name = self.table.changelog_topic.get_topic_name()
        send = self.app.producer.send
        sent = [await send(name, w.key, w.value, w.partition, None, None) for w in writes]
        stored = await asyncio.gather(*sent)
        events = [
            _changelog_event(self.app, name, write, meta.offset)
            for write, meta in zip(writes, stored, strict=True)
        ]
        self.table.apply_changelog_batch(events)

    async def _publish(self, send: Send) -> Awaitable[Any]:
        """Hand the send to the producer; the result resolves when the broker has it.

        Faust's producer (``ProducerT.send``) directly, not ``Topic.send``, whose message
        wrapping, serializers (raw bytes here) and sensors cost about 5% of the worker's CPU
        per result (measured on 2026-11-30: 1,460 against 1,390 us per result)."""
        return await self.app.producer.send(
            send.topic, send.key, send.value, None, None, send.headers
        )

    async def _refresh_gauges(self) -> None:
        """Recount patients and episodes from the local table after each rebalance."""
        if not self.ready():
            self.metrics.ready.set(0)
            return
        self.metrics.ready.set(1)
        assignment = frozenset(self.app.consumer.assignment())
        if assignment != self._counted_assignment:
            self._counted_assignment = assignment
            self.processor.recount(v for v in self.table.values() if v is not None)
        self._publish_lag(assignment)

    def _publish_lag(self, assignment: frozenset[Any]) -> None:
        consumer: Any = self.app.consumer
        lag = lag_by_topic(
            self.processor.feeds,
            assignment,
            consumer.highwater,
            # Faust keeps the offsets it committed (the next to read) per partition.
            consumer._committed_offset.get,
        )
        for topic, behind in lag.items():
            self.metrics.consumer_lag.labels(topic=topic).set(behind)

    async def _refresh_gauges_safely(self) -> None:
        """A failing timer would stop the Faust app: a gauge refresh must never do that."""
        try:
            await self._refresh_gauges()
        except Exception as exc:  # e.g. a partition revoked between assignment() and highwater()
            log.warning("gauge refresh failed (%s); retrying at the next tick", type(exc).__name__)

    # --- web -------------------------------------------------------------------------------

    def _add_web_routes(self) -> None:
        app = self.app
        monitor = self

        @app.page("/metrics")
        async def metrics(web: View, request: Request) -> Response:
            # The classic text format; aiohttp refuses a charset inside content_type.
            return web.bytes(monitor.metrics.exposition(), content_type=CONTENT_TYPE)

        @app.page("/healthz")
        async def healthz(web: View, request: Request) -> Response:
            status, body = monitor.health()
            return web.json(body, status=status)

        @app.page("/readyz")
        async def readyz(web: View, request: Request) -> Response:
            ready = monitor.ready() and monitor.failure is None
            return web.json(
                {"ready": ready, "rebalancing": bool(app.rebalancing)},
                status=200 if ready else 503,
            )

        table = self.table

        @app.page("/patients/{patient_id}")
        class PatientView(View):
            async def get(self, request: Request, **params: Any) -> Response:
                denied = monitor._authorize(self, request)
                if denied is not None:
                    return denied
                return await self._owned(request)

            # Answered by the worker that owns the patient's partition (proxied there if need be).
            @app.table_route(table=table, match_info="patient_id")
            async def _owned(view: View, request: Request) -> Response:  # noqa: N805
                return monitor._patient_response(view, request.match_info["patient_id"])

    def _authorize(self, web: View, request: Request) -> Response | None:
        if self.settings.api_token is None:
            return web.json({"error": "the patient API is off (set MONITOR_API_TOKEN)"}, status=404)
        if not reveals_patient_ids(self.settings, request.headers.get("Authorization", "")):
            return web.json({"error": "unauthorized"}, status=401)
        return None

    def _patient_response(self, web: View, patient_id: str) -> Response:
        stored = self.table.get(patient_id.encode())
        if stored is None:
            return web.json({"error": "no such patient here"}, status=404)
        state = load_state(stored)
        grades = self.processor.detector.current_grades(state)
        return web.json(
            {
                "patient_id": patient_id,
                "history": [
                    {
                        "result_id": e.result_id,
                        "collected_at": datetime.fromtimestamp(e.collected_at, UTC).isoformat(),
                        "status": e.status,
                        "values": {a.value: r.value for a, r in e.readings.items()},
                    }
                    for e in state.history
                ],
                "grades": {c.value: g for c, g in grades.items()},
                "open_episodes": {
                    c: {"grade": ep.grade, "dedup_key": ep.dedup_key}
                    for c, ep in state.open_episodes().items()
                },
                "ward": state.ward,
            }
        )
