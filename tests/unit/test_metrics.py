"""The monitor's own registry: conventional names, fixed label sets, no patient ids."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_names_follow_conventions() -> None:
    metrics = Metrics()
    metrics.results_consumed.inc()
    metrics.processing_seconds.observe(0.001)
    names = {name for name, _ in samples(metrics)}
    assert "monitor_results_consumed_total" in names
    assert "monitor_processing_seconds_bucket" in names
    assert "monitor_result_to_alert_seconds_count" in names
    assert "monitor_build_info" in names
    assert all(name.startswith("monitor_") for name in names)


def test_each_registry_is_separate() -> None:
    first, second = Metrics(), Metrics()
    first.results_consumed.inc(3)
    assert samples(second)[("monitor_results_consumed_total", ())] == 0


def test_episode_gauges_follow_moves() -> None:
    metrics = Metrics()
    metrics.set_episodes(Counter({("neutropenia", 3): 2}))
    metrics.move_episodes({"neutropenia": 3}, {"neutropenia": 4, "anemia": 1})
    values = samples(metrics)
    assert values[("monitor_active_episodes", (("condition", "neutropenia"), ("grade", "3")))] == 1
    assert values[("monitor_active_episodes", (("condition", "neutropenia"), ("grade", "4")))] == 1
    assert values[("monitor_active_episodes", (("condition", "anemia"), ("grade", "1")))] == 1
    metrics.move_episodes({"anemia": 1}, {})
    assert (
        samples(metrics)[("monitor_active_episodes", (("condition", "anemia"), ("grade", "1")))]
        == 0
    )


def test_labels_are_closed_sets() -> None:
    metrics = Metrics()
    labels = {label for (_, pairs) in samples(metrics) for label, _ in pairs}
    assert labels <= {"reason", "kind", "condition", "grade", "event", "severity", "version", "le"}
