"""Replay a sequence of raw messages through the detector, offline (no Kafka).

Used by the offline demo, the benchmark, and to compute the alerts a cohort is expected to
produce, which the integration tests and the demo compare with what the running service
publishes. ``replay_values`` takes canonical JSON results only; ``replay_messages`` takes a
simulated cohort of every feed (JSON, HL7 v2, FHIR, treatments, vitals) and does what the
worker would do had it seen the messages in that order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from monitor.adapters.errors import RowRejection
from monitor.adapters.intake import Rejected, validate_message
from monitor.adapters.rows import Parsed
from monitor.clinical.alert import Alert
from monitor.clinical.detector import Detector, Outcome
from monitor.clinical.history import PatientState, raw_fingerprint
from monitor.clinical.model import describe_validation_error, parse_result
from monitor.settings import MonitorSettings
from monitor.stream.processor import (
    Feed,
    FeedKind,
    apply_event,
    feeds_of,
    readable_content,
    received_at,
    screen,
)


class FeedMessage(Protocol):
    """A message of one logical feed (``results``, ``hl7v2``, ``fhir``, ``treatments``,
    ``vitals``), as the simulator's ``SimMessage`` or a file read by the CLI gives it."""

    @property
    def topic(self) -> str: ...

    @property
    def value(self) -> bytes: ...


@dataclass
class ReplayReport:
    alerts: list[Alert] = field(default_factory=list)
    # Lab messages seen, valid or not: raw values (replay_values), or messages of the results,
    # HL7 v2 and FHIR feeds (replay_messages).
    results: int = 0
    dispositions: Counter[str] = field(default_factory=Counter)  # of CBC results
    invalid: Counter[str] = field(default_factory=Counter)  # reason -> count
    states: dict[str, PatientState] = field(default_factory=dict)
    # replay_messages only:
    messages: Counter[str] = field(default_factory=Counter)  # by logical feed (FeedMessage.topic)
    dead_letters: Counter[str] = field(default_factory=Counter)  # dead-letter code -> count
    treatments: Counter[str] = field(default_factory=Counter)  # disposition -> count
    vitals: Counter[str] = field(default_factory=Counter)  # disposition -> count
    # Rows left out of messages that were otherwise read: (message number from 1, rejection).
    row_rejections: list[tuple[int, RowRejection]] = field(default_factory=list)
    # Messages rejected whole: (message number from 1, rejection).
    rejected_messages: list[tuple[int, Rejected]] = field(default_factory=list)


def replay_values(
    values: Iterable[bytes],
    detector: Detector | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplayReport:
    """Validate and detect each raw canonical JSON value in order, patient by patient."""
    detector = detector or Detector()
    report = ReplayReport()
    for value in values:
        report.results += 1
        try:
            result = parse_result(value)
        except ValidationError as exc:
            report.invalid[describe_validation_error(exc)] += 1
            continue
        outcome = detector.process(
            report.states.get(result.patient_id), result, clock(), raw_fingerprint(value)
        )
        report.states[result.patient_id] = outcome.state
        report.dispositions[outcome.disposition] += 1
        for alert in outcome.alerts:
            report.alerts.append(alert)
            if on_alert is not None:
                on_alert(alert)
    return report


def topic_names(settings: MonitorSettings) -> dict[str, str]:
    """The real topic of each logical feed a ``FeedMessage`` names."""
    return {
        "results": settings.results_topic,
        "hl7v2": settings.hl7v2_topic,
        "fhir": settings.fhir_topic,
        "treatments": settings.treatments_topic,
        "vitals": settings.vitals_topic,
    }


def replay_messages(
    messages: Iterable[FeedMessage],
    settings: MonitorSettings | None = None,
    detector: Detector | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_alert: Callable[[Alert], None] | None = None,
    on_reject: Callable[[int, Rejected], None] | None = None,
) -> ReplayReport:
    """Every message of every feed through the worker's parsing and the detector, in order.

    Each message is parsed by its feed's ``parse`` (``feeds_of(settings)``, after the same size
    and encoding checks as the worker); a message the worker would dead-letter is counted under
    its code in ``dead_letters`` (and its reason in ``invalid``, and in ``rejected_messages``);
    a message some rows of which were left out is counted under ``rows_rejected`` or
    ``implausible`` and its rows listed in ``row_rejections``, its readable rows read. Results
    go to ``Detector.process`` (an HL7 v2 or FHIR message as the canonical results it becomes, each
    fingerprinted as the JSON the worker forwards), treatments to ``process_treatment`` and
    temperatures to ``process_vital``, with one state per patient: what the service would do
    if it saw every message in this order. ``detector`` defaults to one built from ``settings``.

    Like the worker, every message with rejected rows is dead-lettered where it entered, a
    redelivered copy too (the worker tells each copy, even one the detector finds already
    applied), so ``dead_letters`` is the number of dead letters the service publishes.

    A message is received at ``clock()`` (or at its own ``timestamp``, seconds since the epoch,
    when it has one): an event dated later than that plus ``settings.future_tolerance()`` is
    dead-lettered as ``collected_in_future`` like the worker does, keeping the rest of its
    message (a message with rejected rows and a specimen in the future gets both dead letters).
    ``on_reject(position, rejection)`` is called for every dead letter, ``position`` counting
    messages from 1; a dead letter for rejected rows lists them in ``rejection.rows``.
    """
    settings = settings or MonitorSettings()
    detector = detector or Detector(settings.detector)
    feeds = feeds_of(settings)
    by_topic: dict[str, Feed] = {
        logical: feeds[name] for logical, name in topic_names(settings).items()
    }
    report = ReplayReport()

    def record(patient_id: str, outcome: Outcome) -> None:
        report.states[patient_id] = outcome.state
        for alert in outcome.alerts:
            report.alerts.append(alert)
            if on_alert is not None:
                on_alert(alert)

    def reject(position: int, rejected: Rejected) -> None:
        report.dead_letters[rejected.code] += 1
        report.invalid[rejected.reason] += 1
        if rejected.rows:
            report.row_rejections.extend((position, r) for r in rejected.rows)
        else:
            report.rejected_messages.append((position, rejected))
        if on_reject is not None:
            on_reject(position, rejected)

    tolerance = settings.future_tolerance()
    for position, message in enumerate(messages, start=1):
        feed = by_topic.get(message.topic)
        if feed is None:
            raise ValueError(f"unknown feed {message.topic!r}")
        report.messages[message.topic] += 1
        if feed.kind in ("result", "lab"):
            report.results += 1
        verdict = validate_message(message.value, settings.max_message_bytes, feed.parse)
        if isinstance(verdict, Rejected):
            reject(position, verdict)
            continue
        received = received_at(getattr(message, "timestamp", None), clock())
        # As the worker: rejected rows and specimens dated in the future are each dead-lettered
        # once, with their own code; the rest of the message is read.
        rows = verdict.rejected() if isinstance(verdict, Parsed) else None
        verdict, future = screen(feed, verdict, received, tolerance)
        if rows is not None:
            reject(position, rows)
        if future is not None:
            reject(position, future)
        if verdict is None:
            continue
        results = verdict.results if isinstance(verdict, Parsed) else []
        if feed.kind == "result":
            # The worker goes on with its readable components only (``readable_content``).
            events: list[tuple[FeedKind, Any, bytes]] = [
                ("result", r, readable_content(message.value, r, rows)) for r in results
            ]
        elif feed.kind == "lab":
            # The worker forwards each result as canonical JSON and processes that.
            forwarded = [r.model_dump_json().encode() for r in results]
            events = [("result", parse_result(raw), raw) for raw in forwarded]
        else:
            events = [(feed.kind, verdict, message.value)]
        for kind, item, raw in events:
            state = report.states.get(item.patient_id)
            outcome = apply_event(detector, kind, state, item, raw, clock())
            tally = {"treatment": report.treatments, "vital": report.vitals}
            tally.get(kind, report.dispositions)[outcome.disposition] += 1
            record(item.patient_id, outcome)
    return report
