"""The main job on one machine: embedded broker, two workers, a simulated cohort, live alerts.

Every alert is printed as it arrives on the alert topic; at the end a summary compares what was
published with what the cohort should produce, and the run fails if any expected alert is
missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from monitor.alert import Alert
from monitor.broker import EmbeddedBroker, create_topics
from monitor.kafka_io import follow, header, publish
from monitor.local import WorkerProcess
from monitor.render import format_alert
from monitor.replay import replay_values
from monitor.settings import MonitorSettings
from monitor.simulator import CohortSpec, simulate_cohort


@dataclass
class DemoReport:
    results: int = 0
    expected_alerts: int = 0
    alerts: list[Alert] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    dead_letters: Counter[str] = field(default_factory=Counter)
    missing: int = 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def _watch(
    bootstrap: str, settings: MonitorSettings, expected: set[str], report: DemoReport, quiet: bool
) -> None:
    seen: set[str] = set()
    async for record in follow(bootstrap, [settings.alerts_topic, settings.dlq_topic]):
        if record.topic == settings.dlq_topic:
            report.dead_letters[(header(record, "dlq.code") or b"?").decode()] += 1
            continue
        alert = Alert.model_validate_json(record.value)
        if alert.alert_id in seen:
            continue  # an at-least-once repeat: same id, dropped like any consumer would
        seen.add(alert.alert_id)
        report.alerts.append(alert)
        source = header(record, "monitor.source_timestamp")
        if source is not None:
            report.latencies.append(max(0.0, record.timestamp / 1000 - float(source)))
        if not quiet:
            print(format_alert(alert), flush=True)
        if expected <= seen:
            return


async def run_demo_async(
    spec: CohortSpec, workers: int, rate: float, wait_s: float, quiet: bool
) -> DemoReport:
    report = DemoReport()
    messages = simulate_cohort(spec)
    expected_alerts = replay_values(m.value for m in messages).alerts
    expected = {a.alert_id for a in expected_alerts}
    report.results = len(messages)
    report.expected_alerts = len(expected)
    with tempfile.TemporaryDirectory(prefix="cbc-demo-") as tmp, EmbeddedBroker() as broker:
        settings = MonitorSettings(broker_url=broker.url)
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
                print(f"{proc.name} ready: metrics at {proc.url}/metrics", flush=True)
            await create_topics(
                broker.bootstrap,
                {
                    settings.alerts_topic: settings.partitions,
                    settings.dlq_topic: settings.partitions,
                },
            )
            watcher = asyncio.create_task(
                _watch(broker.bootstrap, settings, expected, report, quiet)
            )
            print(
                f"publishing {len(messages)} messages of {spec.patients} simulated patients "
                f"over {spec.days} days at {rate:.0f} messages/s...\n",
                flush=True,
            )
            await publish(
                broker.bootstrap,
                settings.results_topic,
                ((m.key, m.value) for m in messages),
                rate=rate,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watcher, wait_s)
            await asyncio.sleep(1.0)  # let the last dead letters arrive
            report.missing = len(expected - {a.alert_id for a in report.alerts})
        finally:
            for proc in procs:
                proc.stop()
    return report


def print_summary(report: DemoReport) -> None:
    print()
    print(
        f"results published: {report.results:,}   alerts: {len(report.alerts):,} "
        f"(expected {report.expected_alerts:,}, missing {report.missing:,})   "
        f"dead letters: {sum(report.dead_letters.values()):,}"
    )
    tally = Counter((a.condition, a.event, a.severity) for a in report.alerts)
    for (condition, event, severity), count in sorted(tally.items()):
        print(f"  {condition:<16} {event:<9} {severity:<8} {count:>5,}")
    for code, count in sorted(report.dead_letters.items()):
        print(f"  dead letter {code:<16} {count:>5,}")
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
) -> int:
    started = time.monotonic()
    report = asyncio.run(run_demo_async(spec, workers, rate, timeout, quiet))
    print_summary(report)
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    if report.missing:
        print(json.dumps({"error": f"{report.missing} expected alerts never arrived"}))
        return 1
    return 0
