"""What the worker does with one input message, with no Faust in it.

The Faust agent hands each message here and then performs the returned sends in order. Keeping
the decision apart from Faust lets the stream tests drive it directly, and keeps the agent to
moving bytes (DESIGN.md, layers).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from monitor.adapters.canonical import read_result
from monitor.adapters.fhir import read_fhir
from monitor.adapters.future import screen_future
from monitor.adapters.hl7v2 import read_oru
from monitor.adapters.intake import Rejected, dead_letter_headers, validate_message
from monitor.adapters.rows import Parsed
from monitor.adapters.vitals import parse_vital
from monitor.clinical.context import Treatment
from monitor.clinical.detector import Detector, Outcome
from monitor.clinical.history import PatientState, raw_fingerprint
from monitor.clinical.model import CBCResult
from monitor.clinical.stored_state import dump_state, load_state
from monitor.clinical.variation import NoiseModel
from monitor.clinical.watch import patient_summary
from monitor.metrics import Metrics
from monitor.settings import MonitorSettings
from monitor.stream.state_cache import StateCache, TableEpoch

Headers = list[tuple[str, bytes]]

# A dead letter carries the original message's key and bytes only up to this size: Faust's
# producer refuses a record over its ``producer_max_request_size`` (1,000,000 bytes by default),
# and a broker over its ``message.max.bytes`` (about 1 MB by default). Larger originals stay at
# their source offset, which the dead letter's headers name.
DEAD_LETTER_MAX_BYTES = 900_000
DEAD_LETTER_MAX_KEY_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an input message came from (no patient data)."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None  # seconds since the epoch, the message's own timestamp


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)
    alert_labels: tuple[str, str, str] | None = None  # condition, event, severity


def origin_headers(origin: Origin) -> Headers:
    headers = [
        ("monitor.source_topic", origin.topic.encode()),
        ("monitor.source_partition", str(origin.partition).encode()),
        ("monitor.source_offset", str(origin.offset).encode()),
    ]
    if origin.timestamp is not None:
        headers.append(("monitor.source_timestamp", repr(origin.timestamp).encode()))
    return headers


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of one message: sends, then (after their acknowledgement) a state write."""

    sends: list[Send]
    write: tuple[bytes, bytes, PatientState] | None = None  # key, value, decoded state
    # Derived data (the patient's watch-list summary or its tombstone), sent with the alerts;
    # the worker sends only the last of a batch per patient (monitor.stream.batch).
    after: list[Send] = field(default_factory=list)
    # The gauges' change once the state is stored: a new patient, and the open episodes
    # (condition -> grade) before and after (``ResultProcessor.stored``).
    gauges: tuple[bool, dict[str, int], dict[str, int]] | None = None


FeedKind = Literal["result", "lab", "treatment", "vital"]


@dataclass(frozen=True, slots=True)
class Feed:
    """An input topic: how its messages are parsed and where they are handled by patient.

    Result and lab feeds parse to ``rows.Parsed`` (results and rejected rows), treatments and
    vitals to their event."""

    kind: FeedKind
    parse: Callable[[bytes], Any]
    by_patient: str  # the topic whose agent applies them, keyed by patient
    time_field: str = "collected_at"  # where the event's time comes from (dead-letter reasons)


def feeds_of(settings: MonitorSettings) -> dict[str, Feed]:
    """Every input topic the worker consumes, by name."""
    results = f"{settings.results_topic}.by-patient"
    treatments = f"{settings.treatments_topic}.by-patient"
    vitals = f"{settings.vitals_topic}.by-patient"
    local_codes = settings.local_codes()
    default_tz = settings.hl7_default_zone()
    hl7 = functools.partial(read_oru, local_codes=local_codes, default_tz=default_tz)
    fhir = functools.partial(read_fhir, local_codes=local_codes)
    treatment = Treatment.model_validate_json
    return {
        settings.results_topic: Feed("result", read_result, results),
        results: Feed("result", read_result, results),
        settings.hl7v2_topic: Feed("lab", hl7, results, "OBR-7 collection time"),
        settings.fhir_topic: Feed("lab", fhir, results, "effective[x]"),
        settings.treatments_topic: Feed("treatment", treatment, treatments, "given_at"),
        treatments: Feed("treatment", treatment, treatments, "given_at"),
        settings.vitals_topic: Feed("vital", parse_vital, vitals, "measured_at"),
        vitals: Feed("vital", parse_vital, vitals, "measured_at"),
    }


def received_at(timestamp: float | None, now: datetime) -> datetime:
    """When a message was received: its Kafka timestamp, or ``now`` when it has none or when
    its producer's clock is ahead of ours (a timestamp later than now cannot be a receipt)."""
    if timestamp is None:
        return now
    return min(datetime.fromtimestamp(timestamp, UTC), now)


def screen(
    feed: Feed, verdict: Any, received: datetime, tolerance: timedelta
) -> tuple[Any, Rejected | None]:
    """A parsed message without its events dated in the future (``adapters.future``).

    Returns what is left of it (for result and lab feeds a ``rows.Parsed`` whose results dated
    in the future are removed, its rejected rows unchanged; for another feed its event, or None
    if it was in the future) and the rejection naming what was removed, if any.
    """
    if isinstance(verdict, Parsed):
        kept, rejected = screen_future(verdict.results, received, tolerance, feed.time_field)
        return Parsed(kept, verdict.rejections), rejected
    kept_events, rejected = screen_future([verdict], received, tolerance, feed.time_field)
    return (kept_events[0] if kept_events else None), rejected


def readable_content(raw: bytes, result: CBCResult, rows: Rejected | None) -> bytes:
    """The bytes a canonical JSON result goes on as (to its topic keyed by patient) and whose
    hash tells its redeliveries: the message as received when every component was read, else
    ``result`` (its readable components only, marked ``partial``) re-serialized, as an HL7 v2
    or FHIR message's results are. Its rejected rows were dead-lettered where it entered, and
    the next hop, finding none, does not dead-letter them again. The same message always gives
    the same bytes, so a redelivered copy is still known as one."""
    return raw if rows is None else result.model_dump_json().encode()


def apply_event(
    detector: Detector,
    kind: FeedKind,
    state: PatientState | None,
    item: Any,
    raw: bytes,
    now: datetime,
) -> Outcome:
    """Fold one parsed event of a feed (a result, treatment or temperature) into the state.

    ``raw`` is the message the event came from: its hash tells a redelivered result.
    """
    if kind == "treatment":
        return detector.process_treatment(state, item)
    if kind == "vital":
        return detector.process_vital(state, item, now)
    return detector.process(state, item, now, raw_fingerprint(raw))


class ResultProcessor:
    """Validate, route and detect; the patient table is any mutable mapping of bytes to bytes."""

    def __init__(
        self,
        settings: MonitorSettings,
        metrics: Metrics,
        table: MutableMapping[bytes, bytes],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        state_cache_size: int = 4096,
        table_epoch: TableEpoch | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.table = table
        self.clock = clock
        self.detector = Detector(settings.detector)
        self.feeds = feeds_of(settings)
        self.repartition_topic = self.feeds[settings.results_topic].by_patient
        self._future_tolerance = settings.future_tolerance()
        # With ``table_epoch`` a cached state is used without reading the table until the epoch
        # changes (``StateCache.trusted``); the caller then stores every planned state or
        # ``forget``s it.
        self._states = StateCache(state_cache_size, table_epoch)
        # The watch list's "falling / rising / stable": the detector's own RCV table and Z.
        self._direction_noise = NoiseModel(
            self.detector.settings.rcv_z, self.detector.settings.variation
        )

    def handle(self, raw: bytes | None, key: bytes | None, origin: Origin) -> list[Send]:
        """Plan and write at once (for callers that need no ordering against the sends)."""
        plan = self.plan(raw, key, origin)
        self.write(plan)
        self.stored(plan)
        return plan.sends

    def write(self, plan: Plan) -> None:
        """Write the patient's new state into ``table``. The worker's table is its batch's
        pending states (``monitor.stream.batch``), which reach the Faust table only once the
        batch's alerts are acknowledged: state that says a result was handled must never be
        stored without its alerts, or a redelivery after a crash would be a silent duplicate."""
        if plan.write is not None:
            key, value, state = plan.write
            self.table[key] = value
            self._states.put(key, value, state)

    def unstored(self, keys: Iterable[bytes]) -> None:
        """Forget the cached states of ``keys``: their planned states were not stored (a batch
        failed), so the table may hold older ones."""
        for key in keys:
            self._states.forget(key)

    def stored(self, plan: Plan) -> None:
        """Move the patients and episodes gauges once the plan's state is in the table. Not at
        planning: a recount from the table (``recount``, after a rebalance) between planning
        and storing would miss the change for good."""
        if plan.gauges is not None:
            new_patient, before, after = plan.gauges
            if new_patient:
                self.metrics.patients_tracked.inc()
            self.metrics.move_episodes(before, after)

    def plan(self, raw: bytes | None, key: bytes | None, origin: Origin) -> Plan:
        """What one message calls for: the sends, and the state to write once they are out."""
        started = time.perf_counter()
        self.metrics.results_consumed.inc()
        feed = self.feeds[origin.topic]
        verdict = validate_message(raw, self.settings.max_message_bytes, feed.parse)
        if isinstance(verdict, Rejected):
            return Plan([self._dead_letter(raw, key, origin, verdict)])
        assert raw is not None
        now = self.clock()  # one instant for the whole message
        received = received_at(origin.timestamp, now)
        # Rejected rows and specimens dated in the future are separate faults: a message with
        # both gets two dead letters, each with its own code and reason. Both are told here, on
        # the hop where the message entered (its own bytes, topic and offset), once per message;
        # what goes on carries its readable rows only, so the next hop finds nothing to reject.
        rows = verdict.rejected() if isinstance(verdict, Parsed) else None
        verdict, future = screen(feed, verdict, received, self._future_tolerance)
        dead = [
            self._dead_letter(raw, key, origin, fault)
            for fault in (rows, future)
            if fault is not None
        ]
        content = raw  # the bytes that go on keyed by patient, and whose hash tells a redelivery
        if feed.kind == "lab":
            # HL7 v2 or FHIR, now canonical: on to the results keyed by patient.
            results: list[CBCResult] = verdict.results
            return Plan([
                *(Send(feed.by_patient, r.patient_id.encode(), r.model_dump_json().encode(),
                       origin_headers(origin)) for r in results),
                *dead,
            ])  # fmt: skip
        if feed.kind == "result":
            if not verdict.results:  # every component left out, or dated in the future
                return Plan(dead)
            verdict = verdict.results[0]
            content = readable_content(raw, verdict, rows)
        elif verdict is None:
            return Plan(dead)
        patient_key = verdict.patient_id.encode()
        if key != patient_key:
            # Keyed otherwise (or not at all): send it on keyed by patient, so one worker sees
            # all of a patient's events in order, in the patient's partition, under the
            # patient's lock (a batch locks its messages' keys, monitor.stream.batch). On the
            # by-patient topic itself this can only be a message another producer put there.
            return Plan(
                [Send(feed.by_patient, patient_key, content, origin_headers(origin)), *dead]
            )
        cached = self._states.trusted(patient_key)
        stored: bytes | None
        if cached is None:
            stored = self.table.get(patient_key)
            state = self._states.get(patient_key, stored)
        else:
            stored, state = cached
        # The detector changes the state in place: until ``write`` stores it, the cache must not
        # offer it as what the table holds.
        self._states.forget(patient_key)
        before = _open_grades(state)
        outcome = self._apply(feed, state, verdict, content, now)
        if outcome.disposition != "accepted":
            self.metrics.duplicates_ignored.labels(kind=outcome.disposition).inc()
            self.metrics.processing_seconds.observe(time.perf_counter() - started)
            if stored is not None and state is not None:
                self._states.put(patient_key, stored, state)  # unchanged
            # A copy already applied is still a message with bad rows: told like any other.
            return Plan(dead)
        # The summary first: it records in the state whether one is out.
        after = self._summary(patient_key, verdict.patient_id, outcome.state, now)
        dumped = dump_state(outcome.state)
        headers = origin_headers(origin) if outcome.alerts else []
        sends = [
            Send(
                self.settings.alerts_topic,
                patient_key,
                alert.model_dump_json().encode(),
                headers,
                alert_labels=(alert.condition, alert.event, alert.severity),
            )
            for alert in outcome.alerts
        ]
        self.metrics.processing_seconds.observe(time.perf_counter() - started)
        gauges = (state is None, before, _open_grades(outcome.state))
        return Plan([*sends, *dead], (patient_key, dumped, outcome.state), after, gauges)

    def _summary(
        self, key: bytes, patient_id: str, state: PatientState, now: datetime
    ) -> list[Send]:
        """The patient's watch-list summary; a tombstone once, when the patient whose summary
        is out leaves the window (``state.summary_published``, updated here); else nothing (no
        chemotherapy known, or the tombstone already sent)."""
        summary = patient_summary(
            state,
            patient_id,
            now,
            window=self.detector.settings.nadir_window_days,
            ctcae_version=self.detector.settings.ctcae_version,
            default_lln=self.detector.settings.default_lln,
            noise=self._direction_noise,
        )
        if summary is not None:
            value: bytes | None = summary.model_dump_json().encode()
            state.summary_published = True
        elif state.summary_published:
            value = None  # leaves every dashboard's watch list (and the compacted topic)
            state.summary_published = False
        else:
            return []
        return [Send(self.settings.summaries_topic, key, value)]

    def _apply(
        self, feed: Feed, state: PatientState | None, item: Any, raw: bytes, now: datetime
    ) -> Outcome:
        return apply_event(self.detector, feed.kind, state, item, raw, now)

    def failed(self, raw: bytes | None, key: bytes | None, origin: Origin, exc: Exception) -> Send:
        """A dead letter for a message whose processing raised: kept for replay, never dropped."""
        rejected = Rejected("processing_error", "processing failed", type(exc).__name__)
        return self._dead_letter(raw, key, origin, rejected)

    def published(self, send: Send, origin: Origin) -> None:
        """Account for a send once the producer has taken it."""
        if send.alert_labels is None:
            return
        condition, event, severity = send.alert_labels
        self.metrics.alerts.labels(condition=condition, event=event, severity=severity).inc()
        if origin.timestamp is not None:
            self.metrics.result_to_alert_seconds.observe(max(0.0, time.time() - origin.timestamp))

    def recount(self, values: Iterable[bytes]) -> None:
        """Rebuild the patients and episode gauges from the local table (after a rebalance)."""
        patients = 0
        tally: Counter[tuple[str, int]] = Counter()
        for value in values:
            patients += 1
            for condition, grade in _open_grades(load_state(value)).items():
                tally[(condition, grade)] += 1
        self.metrics.patients_tracked.set(patients)
        self.metrics.set_episodes(tally)

    def _dead_letter(
        self, raw: bytes | None, key: bytes | None, origin: Origin, rejected: Rejected
    ) -> Send:
        self.metrics.results_invalid.labels(reason=rejected.code).inc()
        headers = dead_letter_headers(rejected, origin.topic, origin.partition, origin.offset)
        size = len(raw or b"") + len(key or b"")
        if size > DEAD_LETTER_MAX_BYTES:
            # A record the producer would refuse (over its request size) would stop the worker
            # at every redelivery: the dead letter then points at the original instead.
            headers.append(("dlq.original_omitted", f"{size} bytes".encode()))
            raw = None
            key = key if key is None or len(key) <= DEAD_LETTER_MAX_KEY_BYTES else None
        return Send(self.settings.dlq_topic, key, raw, headers)


def _open_grades(state: PatientState | None) -> dict[str, int]:
    if state is None:
        return {}
    return {c: ep.grade for c, ep in state.open_episodes().items()}
