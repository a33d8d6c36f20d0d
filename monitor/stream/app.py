"""The Faust worker: topics, the patient table, the agents, and the web endpoints.

Thin by design: every decision is made in ``ResultProcessor`` and the clinical core; this module
wires them to Kafka. Built per call (``MonitorApp(settings)``), not at import, so tests can make
a fresh app each time (DESIGN.md: module-level tables keep state across tests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import faust
from faust.web import Request, Response, View

from monitor.clinical.history import load_state
from monitor.dashboard.routes import install_dashboard, reveals_patient_ids
from monitor.kafka.security import faust_credentials
from monitor.metrics import CONTENT_TYPE, Metrics
from monitor.settings import MonitorSettings
from monitor.stream.locks import KeyedLocks
from monitor.stream.processor import Origin, Plan, ResultProcessor, Send
from monitor.stream.transport import MonitorFaustApp

log = logging.getLogger("monitor.worker")

TABLE_NAME = "patients"


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
        # Faust's producer batch size is in bytes: 1 puts every record in a batch of its own.
        **({"producer_max_batch_size": 1} if settings.one_record_per_batch else {}),
        # Faust's /table/{name}/{key}/ would serve a patient's stored state with no token.
        "web_tables_enabled": False,
        "autodiscover": False,
        "web_in_thread": False,
    }


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


def _log_failed_summary(delivery: asyncio.Future[Any]) -> None:
    """A summary the broker refused: log the exception class only (no patient data); the
    patient's next event publishes a new one."""
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("patient summary not delivered (%s)", type(delivery.exception()).__name__)


class MonitorApp:
    def __init__(self, settings: MonitorSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.app = MonitorFaustApp(settings.app_id, **faust_settings(settings))
        self.app.fetch_max_wait_ms = settings.fetch_max_wait_ms
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
        self.processor = ResultProcessor(settings, self.metrics, self.table)
        # One message of a patient at a time over every agent (see ``handle``).
        self._patient_locks = KeyedLocks()
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
            self.app.agent(self._topics[name], name=f"consume-{name}", concurrency=1)(self._consume)
        self._counted_assignment: frozenset[Any] | None = None
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

    # --- the agent -------------------------------------------------------------------------

    async def _consume(self, stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            message = event.message
            origin = Origin(
                message.topic, message.partition, message.offset, message.timestamp or None
            )
            await self.handle(event.value, event.key, origin)
            yield None

    async def handle(self, value: bytes | None, key: bytes | None, origin: Origin) -> None:
        """One input message: plan, publish its sends and await them, write the state, then
        hand its summaries to the producer.

        One message of a patient at a time over all the agents (``monitor.stream.locks``): each
        agent reads a patient's state, awaits the alerts' acknowledgements, then writes the
        state back, so two agents interleaving on one patient (a result and a temperature sent
        together on their two topics) would each write a state without the other's event.
        """
        async with self._patient_locks.hold(key):
            try:
                plan = self.processor.plan(value, key, origin)
            except Exception as exc:  # a fault of ours, not of the input: keep it for replay
                log.error(
                    "processing failed with %s at %s[%d]@%d; sent to the dead-letter topic",
                    type(exc).__name__,
                    origin.topic,
                    origin.partition,
                    origin.offset,
                )
                plan = Plan([self.processor.failed(value, key, origin, exc)])
            delivered = []
            for send in plan.sends:
                delivered.append(await self._publish(send))
                self.processor.published(send, origin)
            if plan.write is None:
                return
            # Alerts first, then the state that records them (see ResultProcessor.write):
            # a crash in between repeats an alert (same id), it never loses one.
            if delivered:
                await asyncio.gather(*delivered)
            self.processor.write(plan)
            # Then the patient's watch-list summary (derived from the state just written).
            # Handed to the producer, not waited for: Faust flushes the producer before it
            # commits offsets (Consumer._commit_offsets), so it is out before the input's
            # offset is committed, with no extra acknowledgement wait per message.
            for send in plan.after:
                delivery = await self._publish(send)
                asyncio.ensure_future(delivery).add_done_callback(_log_failed_summary)

    async def _publish(self, send: Send) -> Awaitable[Any]:
        """Hand the send to the producer; the result resolves when the broker has it."""
        return await self._topics[send.topic].send(
            key=send.key, value=send.value, headers=send.headers
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
            return web.json({"status": "alive"})

        @app.page("/readyz")
        async def readyz(web: View, request: Request) -> Response:
            ready = monitor.ready()
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
