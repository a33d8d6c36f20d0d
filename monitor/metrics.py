"""The monitor's own Prometheus metrics, in their own registry.

Conventional names (``monitor_`` prefix, ``_total`` counters, ``_seconds`` histograms) and no
patient identifier in any label: labels take only small fixed sets of values. Faust's bundled
Prometheus sensor is not used (DESIGN.md: it records several latencies as about 0).
"""

from __future__ import annotations

from collections import Counter as TallyCounter

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from monitor import __version__
from monitor.clinical.analytes import Condition

# What ``generate_latest`` writes: the Prometheus text format 0.0.4 (UTF-8).
CONTENT_TYPE = "text/plain; version=0.0.4"

# Dead-letter reasons, a closed set so the label stays small (the full text goes in a header).
INVALID_REASONS = (
    "not_json",
    "schema",
    "unknown_unit",
    "missing_id",
    "oversize",
    "not_utf8",
    "processing_error",
    "unmappable",
    "rows_rejected",
    "implausible",
    "collected_in_future",
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.results_consumed = Counter(
            "monitor_results_consumed", "CBC result messages read from the input topic", registry=r
        )
        self.results_invalid = Counter(
            "monitor_results_invalid",
            "Result messages sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.duplicates_ignored = Counter(
            "monitor_duplicates_ignored",
            "Redelivered or stale results that changed nothing",
            ["kind"],
            registry=r,
        )
        self.alerts = Counter(
            "monitor_alerts",
            "Alerts published, by condition, event and severity",
            ["condition", "event", "severity"],
            registry=r,
        )
        self.processing_seconds = Histogram(
            "monitor_processing_seconds",
            "Time to validate and evaluate one result, publishing excluded",
            buckets=_PROCESSING_BUCKETS,
            registry=r,
        )
        self.result_to_alert_seconds = Histogram(
            "monitor_result_to_alert_seconds",
            "From the input message's timestamp to the alert's publication",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.patients_tracked = Gauge(
            "monitor_patients_tracked",
            "Patients with state in this worker's partitions",
            registry=r,
        )
        self.active_episodes = Gauge(
            "monitor_active_episodes",
            "Open episodes in this worker's partitions, by condition and grade",
            ["condition", "grade"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "monitor_consumer_lag",
            "Messages between the committed offset and the end of this worker's assigned"
            " partitions, by input topic",
            ["topic"],
            registry=r,
        )
        self.ready = Gauge(
            "monitor_ready", "1 once table recovery has finished, else 0", registry=r
        )
        self.build = Info("monitor_build", "Version of the running monitor", registry=r)
        self.build.info({"version": __version__})
        for reason in INVALID_REASONS:
            self.results_invalid.labels(reason=reason)
        for kind in ("duplicate", "stale"):
            self.duplicates_ignored.labels(kind=kind)
        self._episodes: TallyCounter[tuple[str, int]] = TallyCounter()
        self.set_episodes(TallyCounter())

    def set_episodes(self, tally: TallyCounter[tuple[str, int]]) -> None:
        """Publish open-episode counts; every (condition, grade) pair is always exported."""
        self._episodes = tally
        for condition in Condition:
            for grade in range(1, 5):
                self._publish_episodes(condition.value, grade)

    def _publish_episodes(self, condition: str, grade: int) -> None:
        self.active_episodes.labels(condition=condition, grade=str(grade)).set(
            self._episodes.get((condition, grade), 0)
        )

    def move_episodes(self, before: dict[str, int], after: dict[str, int]) -> None:
        """Apply one patient's change of open episodes (condition -> grade) to the gauges."""
        for condition, grade in before.items():
            if after.get(condition) != grade:
                self._episodes[(condition, grade)] -= 1
                self._publish_episodes(condition, grade)
        for condition, grade in after.items():
            if before.get(condition) != grade:
                self._episodes[(condition, grade)] += 1
                self._publish_episodes(condition, grade)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
