"""How fast the alert topic's consumers fold alerts: the dashboard's view (every worker replays
the whole alert topic at start) and the paging bridge's episode book plus Alertmanager payloads
(the bridge rebuilds from the whole topic at start, then posts each change)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from monitor.bench.detector import cohort_values
from monitor.bridge.alertmanager import AlertmanagerOutput
from monitor.bridge.episodes import EpisodeBook
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert
from monitor.dashboard.view import DashboardView
from monitor.stream.replay import replay_values


def cohort_alerts(patients: int = 400) -> list[bytes]:
    """The alert messages a simulated cohort produces, as the worker publishes them."""
    report = replay_values(cohort_values(patients))
    return [a.model_dump_json().encode() for a in report.alerts]


Fold = Callable[[bytes], object]


def _best_rate(new_fold: Callable[[], Fold], messages: list[bytes], rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        step = new_fold()
        started = time.perf_counter()
        for message in messages:
            step(message)
        best = max(best, len(messages) / (time.perf_counter() - started))
    return best


def measure_alert_folds(rounds: int = 3) -> tuple[float, float, int]:
    """(dashboard alerts/s, bridge alerts/s, alerts), each best of ``rounds`` from empty state,
    JSON decoding included."""
    messages = cohort_alerts()
    now = datetime(2026, 12, 1, tzinfo=UTC)

    def dashboard_step() -> Fold:
        view = DashboardView()
        return lambda raw: view.apply(Alert.model_validate_json(raw))

    def bridge_step() -> Fold:
        book = EpisodeBook()
        output = AlertmanagerOutput(Pseudonymizer(b"bench-key-0123456789"), timedelta(seconds=60))

        def step(raw: bytes) -> None:
            change = book.apply(Alert.model_validate_json(raw))
            if change is not None:
                output.on_change(change, now)

        return step

    dashboard = _best_rate(dashboard_step, messages, rounds)
    bridge = _best_rate(bridge_step, messages, rounds)
    return dashboard, bridge, len(messages)
