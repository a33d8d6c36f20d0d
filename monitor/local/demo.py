"""The main job on one machine: embedded broker, two workers, a simulated cohort, live alerts.

The cohort speaks every feed the worker reads: canonical JSON, HL7 v2 and FHIR results (each
patient's lab in one format), chemotherapy doses and temperatures. Each message goes to its
feed's topic, keyed by patient, in the order the simulator lists them. Every alert is printed as
it arrives on the alert topic; at the end a summary compares what was published with what the
cohort should produce (``replay_messages``), and the run fails if any expected alert is missing.

Kafka keeps order only within a partition of one topic, so the service may see a patient's
temperatures and results interleaved otherwise than the list. Febrile neutropenia pairs the two,
so its alerts are compared by the set of patients who got a ``new`` one (reported, never a
failure); every other alert depends on results alone and is compared by ``alert_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.clinical.alert import Alert, format_alert
from monitor.clinical.detector import Detector
from monitor.kafka.clients import follow, header, publish_to
from monitor.kafka.topics import create_topics
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from monitor.settings import MonitorSettings
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.messages import TOPICS, SimMessage
from monitor.stream.replay import replay_messages, topic_names

FEBRILE_NEUTROPENIA = "febrile_neutropenia"
# Once every other expected alert is in, how long to wait for febrile neutropenia stragglers.
FEBRILE_GRACE_S = 3.0


@dataclass
class DemoReport:
    results: int = 0  # messages published, every feed
    expected_alerts: int = 0  # alerts the replay expects (febrile neutropenia included)
    alerts: list[Alert] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    missing: int = 0  # expected alerts other than febrile neutropenia that never arrived
    published: Counter[str] = field(default_factory=Counter)  # by feed (SimMessage.topic)
    expected_dead_letters: int = 0
    unexpected: int = 0  # alerts other than febrile neutropenia that the replay did not expect
    expected_fn_patients: set[str] = field(default_factory=set)
    seen_fn_patients: set[str] = field(default_factory=set)
    hysteresis: HysteresisEffect | None = None

    @property
    def missing_fn_patients(self) -> set[str]:
        return self.expected_fn_patients - self.seen_fn_patients

    @property
    def unexpected_fn_patients(self) -> set[str]:
        return self.seen_fn_patients - self.expected_fn_patients


@dataclass
class _Expected:
    ids: set[str]  # alert ids, febrile neutropenia excepted
    fn_patients: set[str]  # patients with a new febrile neutropenia
    dead_letters: int


@dataclass(frozen=True)
class HysteresisEffect:
    """The same messages replayed with the RCV hysteresis (the settings') and every crossing."""

    on: bool
    alerts: int
    pages: int
    every_crossing_alerts: int
    every_crossing_pages: int
    held_back: int  # results whose grade change was held back as within the RCV

    def describe(self) -> str:
        if not self.on:
            return (
                f"hysteresis off (MONITOR_HYSTERESIS=false): every grade crossing announced, "
                f"{self.alerts:,} alerts, {self.pages:,} pages"
            )
        return (
            f"hysteresis on (RCV): {self.alerts:,} alerts and {self.pages:,} pages, against "
            f"{self.every_crossing_alerts:,} alerts and {self.every_crossing_pages:,} pages with "
            f"every crossing announced; {self.held_back:,} results held back as within the "
            f"reference change value"
        )


def hysteresis_effect(messages: list[SimMessage], settings: MonitorSettings) -> HysteresisEffect:
    """Replay ``messages`` offline with the settings' detector and with hysteresis off."""
    every = settings.detector.model_copy(update={"hysteresis": False})
    with_settings = replay_messages(messages, settings)
    crossing = replay_messages(messages, settings, detector=Detector(every))
    return HysteresisEffect(
        on=settings.hysteresis,
        alerts=len(with_settings.alerts),
        pages=sum(a.page for a in with_settings.alerts),
        every_crossing_alerts=len(crossing.alerts),
        every_crossing_pages=sum(a.page for a in crossing.alerts),
        held_back=sum(
            len(ids) for s in with_settings.states.values() for ids in s.suppressed.values()
        ),
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def is_new_fn(alert: Alert) -> bool:
    return alert.condition == FEBRILE_NEUTROPENIA and alert.event == "new"


def expected_of(messages: Iterable[SimMessage], settings: MonitorSettings) -> tuple[_Expected, int]:
    """What the service should publish for ``messages``, and how many alerts that is in all."""
    replay = replay_messages(messages, settings)
    expected = _Expected(
        ids={a.alert_id for a in replay.alerts if a.condition != FEBRILE_NEUTROPENIA},
        fn_patients={a.patient_id for a in replay.alerts if is_new_fn(a)},
        dead_letters=sum(replay.dead_letters.values()),
    )
    return expected, len({a.alert_id for a in replay.alerts})


async def _watch(
    bootstrap: str,
    settings: MonitorSettings,
    report: DemoReport,
    seen: set[str],
    quiet: bool,
) -> None:
    records = follow(bootstrap, [settings.alerts_topic, settings.dlq_topic])
    async with contextlib.aclosing(records):
        async for record in records:
            if record.topic == settings.dlq_topic:
                report.dead_letters[(header(record, "dlq.code") or b"?").decode()] += 1
                continue
            alert = Alert.model_validate_json(record.value)
            if alert.alert_id in seen:
                continue  # an at-least-once repeat: same id, dropped like any consumer would
            seen.add(alert.alert_id)
            report.alerts.append(alert)
            if is_new_fn(alert):
                report.seen_fn_patients.add(alert.patient_id)
            source = header(record, "monitor.source_timestamp")
            if source is not None:
                report.latencies.append(max(0.0, record.timestamp / 1000 - float(source)))
            if not quiet:
                print(format_alert(alert), flush=True)


async def publish_messages(
    bootstrap: str,
    settings: MonitorSettings,
    messages: Iterable[SimMessage],
    rate: float | None = None,
    security: Mapping[str, Any] | None = None,
) -> Counter[str]:
    """Send each message to its feed's topic keyed by ``key``, in order, at most ``rate`` per
    second, through one producer; wait for every ack. Returns the count sent per feed."""
    topics = topic_names(settings)
    feed_of = {topic: feed for feed, topic in topics.items()}
    triples = ((topics[m.topic], m.key, m.value) for m in messages)
    sent = await publish_to(bootstrap, triples, rate, security=security)
    return Counter({feed_of[topic]: count for topic, count in sent.items()})


async def _until_complete(
    report: DemoReport,
    expected: _Expected,
    seen: set[str],
    watcher: asyncio.Task[None],
    wait_s: float,
) -> None:
    """Until every expected alert and dead letter is in, or ``wait_s`` passes; once all but the
    febrile neutropenia patients are in, at most FEBRILE_GRACE_S more."""
    started = time.monotonic()
    core_done_at: float | None = None
    while not watcher.done():
        now = time.monotonic()
        core = expected.ids <= seen and sum(report.dead_letters.values()) >= expected.dead_letters
        if core and expected.fn_patients <= report.seen_fn_patients:
            return
        if core and core_done_at is None:
            core_done_at = now
        if core_done_at is not None and now - core_done_at > FEBRILE_GRACE_S:
            return
        if now - started > wait_s:
            return
        await asyncio.sleep(0.1)


async def run_demo_async(
    spec: CohortSpec,
    workers: int,
    rate: float,
    wait_s: float,
    quiet: bool,
    report: DemoReport | None = None,
    keep_running: bool = False,
) -> DemoReport:
    """Run the demo; with ``keep_running``, print the summary and keep the broker and workers
    (and so the dashboard) up until the process is interrupted."""
    report = report if report is not None else DemoReport()
    messages = simulate_cohort(spec)
    report.results = len(messages)
    with tempfile.TemporaryDirectory(prefix="cbc-demo-") as tmp, EmbeddedBroker() as broker:
        settings = MonitorSettings(broker_url=broker.url)
        expected, report.expected_alerts = expected_of(messages, settings)
        report.expected_fn_patients = set(expected.fn_patients)
        report.expected_dead_letters = expected.dead_letters
        report.hysteresis = hysteresis_effect(messages, settings)
        root = Path(tmp)
        print(f"embedded broker on {broker.bootstrap}; starting {workers} workers...", flush=True)
        procs = [
            WorkerProcess(f"worker-{i + 1}", broker.url, root / f"worker-{i + 1}", log_dir=root)
            for i in range(workers)
        ]
        try:
            for proc in procs:
                proc.start()
            for proc in procs:
                await asyncio.to_thread(proc.wait_ready)
            for proc in procs:
                print(
                    f"{proc.name} ready: dashboard at {proc.url}/, metrics at {proc.url}/metrics",
                    flush=True,
                )
            await create_topics(
                broker.bootstrap,
                {
                    settings.alerts_topic: settings.partitions,
                    settings.dlq_topic: settings.partitions,
                    settings.summaries_topic: settings.partitions,
                },
                configs={settings.summaries_topic: {"cleanup.policy": "compact"}},
            )
            seen: set[str] = set()
            watcher = asyncio.create_task(_watch(broker.bootstrap, settings, report, seen, quiet))
            feeds = Counter(m.topic for m in messages)
            print(
                f"publishing {len(messages)} messages of {spec.patients} simulated patients "
                f"over {spec.days} days at {rate:.0f} messages/s "
                f"({', '.join(f'{t} {feeds[t]}' for t in TOPICS if feeds[t])})...\n",
                flush=True,
            )
            report.published = await publish_messages(broker.bootstrap, settings, messages, rate)
            try:
                await _until_complete(report, expected, seen, watcher, wait_s)
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            others = {a.alert_id for a in report.alerts if a.condition != FEBRILE_NEUTROPENIA}
            report.missing = len(expected.ids - others)
            report.unexpected = len(others - expected.ids)
            if keep_running:
                print_summary(report)
                print(
                    f"\nstill running: dashboard at {procs[0].url}/ ; press Ctrl-C to stop",
                    flush=True,
                )
                await asyncio.Event().wait()
        finally:
            for proc in procs:
                proc.stop()
    return report


def print_summary(report: DemoReport) -> None:
    print()
    published = ", ".join(f"{t} {report.published[t]:,}" for t in TOPICS if report.published[t])
    print(f"messages published: {report.results:,} ({published})")
    print(
        f"alerts: {len(report.alerts):,} (expected {report.expected_alerts:,}; "
        f"other than febrile neutropenia: missing {report.missing:,}, "
        f"unexpected {report.unexpected:,})   "
        f"dead letters: {sum(report.dead_letters.values()):,} "
        f"(expected {report.expected_dead_letters:,})"
    )
    tally = Counter((a.condition, a.event, a.severity) for a in report.alerts)
    for (condition, event, severity), count in sorted(tally.items()):
        print(f"  {condition:<19} {event:<9} {severity:<8} {count:>5,}")
    for code, count in sorted(report.dead_letters.items()):
        print(f"  dead letter {code:<19} {count:>5,}")
    with_days = sum(1 for a in report.alerts if a.days_since_chemo is not None)
    with_nadir = sum(1 for a in report.alerts if a.in_nadir_window is not None)
    in_nadir = sum(1 for a in report.alerts if a.in_nadir_window)
    print(
        f"chemotherapy context: {with_days:,} of {len(report.alerts):,} alerts carried "
        f"days_since_chemo, {with_nadir:,} in_nadir_window ({in_nadir:,} inside the nadir window)"
    )
    fn_alerts = sum(1 for a in report.alerts if a.condition == FEBRILE_NEUTROPENIA)
    print(
        f"febrile neutropenia: {fn_alerts:,} alerts; patients with a new one: expected "
        f"{len(report.expected_fn_patients)}, seen {len(report.seen_fn_patients)} "
        f"(missing {len(report.missing_fn_patients)}, "
        f"unexpected {len(report.unexpected_fn_patients)})"
    )
    if report.hysteresis is not None:
        print(report.hysteresis.describe())
    print(
        f"result-to-alert latency: p50 {percentile(report.latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(report.latencies, 99) * 1000:.0f} ms over {len(report.latencies)} alerts"
    )
    print("metrics: each worker serves /metrics on its web port (MONITOR_WEB_PORT, default 6066)")


def run_demo(
    spec: CohortSpec,
    workers: int = 2,
    rate: float = 150.0,
    timeout: float = 60.0,
    quiet: bool = False,
    keep_running: bool = False,
) -> int:
    started = time.monotonic()
    report = DemoReport()
    try:
        asyncio.run(run_demo_async(spec, workers, rate, timeout, quiet, report, keep_running))
    except KeyboardInterrupt:
        if not keep_running:
            raise
    else:
        print_summary(report)
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    if report.missing:
        print(json.dumps({"error": f"{report.missing} expected alerts never arrived"}))
        return 1
    return 0
