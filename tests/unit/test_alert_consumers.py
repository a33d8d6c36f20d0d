"""The alert topic's two consumers agree with the detector that wrote it.

The dashboard's view and the paging bridge's episode book are rebuilt from alerts alone; after
folding a simulated cohort's alerts, both must hold exactly the episodes the detector's final
patient states leave open, at the same grades, however often each alert is redelivered.
"""

from __future__ import annotations

import pytest

from monitor.bench.alert_fold import cohort_alerts
from monitor.bench.detector import cohort_values
from monitor.bridge.episodes import EpisodeBook
from monitor.clinical.alert import Alert
from monitor.dashboard.view import DashboardView
from monitor.stream.replay import replay_values


@pytest.fixture(scope="module")
def cohort() -> tuple[list[Alert], dict[str, int]]:
    report = replay_values(cohort_values(patients=60, seed=3))
    still_open = {
        episode.dedup_key: episode.grade
        for state in report.states.values()
        for episode in state.open_episodes().values()
    }
    return report.alerts, still_open


def test_the_cohort_leaves_some_episodes_open_and_closes_others(
    cohort: tuple[list[Alert], dict[str, int]],
) -> None:
    alerts, still_open = cohort
    assert still_open
    assert any(a.event == "resolved" for a in alerts)


@pytest.mark.parametrize("deliveries", [1, 2])
def test_dashboard_and_bridge_hold_the_detectors_open_episodes(
    cohort: tuple[list[Alert], dict[str, int]], deliveries: int
) -> None:
    alerts, still_open = cohort
    view, book = DashboardView(), EpisodeBook()
    for alert in alerts:
        for _ in range(deliveries):  # at-least-once: a redelivery changes nothing
            view.apply(alert)
            book.apply(alert)
    assert {k: e.grade for k, e in view.episodes.items()} == still_open
    assert {e.dedup_key: e.grade for e in book.open_episodes()} == still_open


def test_the_bench_alerts_are_the_published_json() -> None:
    raw = cohort_alerts(patients=20)
    assert raw
    assert all(Alert.model_validate_json(r).model_dump_json().encode() == r for r in raw)
