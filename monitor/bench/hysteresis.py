"""Alert fatigue on the noisy cohort, with the RCV hysteresis off and on (issue 10).

Both runs replay the same results (``monitor.sim.noisy``) through the detector, without Kafka.
Per run: alerts and pages per episode (an episode is a dedup key), per patient, and the time
from the first paging-grade result of each episode to that episode's first page, in simulated
hours (the replay processes each result as it is collected, so this is the clinical delay the
rule adds, which must be zero: a grade worse than reached is never held back).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.clinical.alert import Alert
from monitor.clinical.analytes import Condition
from monitor.clinical.detector import Detector, DetectorSettings
from monitor.clinical.history import PatientState, raw_fingerprint
from monitor.clinical.model import parse_result
from monitor.sim.noisy import NoisySpec, simulate_noisy_cohort


@dataclass(frozen=True)
class FatigueReport:
    results: int
    patients: int
    episodes: int
    alerts: int
    pages: int
    held_back: int  # results whose grade change was held back as within the RCV
    delays_h: tuple[float, ...]  # first paging-grade result -> page, per paged episode
    unpaged: int  # episodes with a paging-grade result and no page

    @property
    def alerts_per_episode(self) -> float:
        return self.alerts / self.episodes if self.episodes else 0.0

    @property
    def pages_per_episode(self) -> float:
        return self.pages / self.episodes if self.episodes else 0.0

    def describe(self) -> str:
        delay = (
            f"median {statistics.median(self.delays_h):.1f} h, max {max(self.delays_h):.1f} h"
            if self.delays_h
            else "no paging-grade episode"
        )
        return (
            f"{self.episodes:,} episodes, {self.alerts_per_episode:.2f} alerts and "
            f"{self.pages_per_episode:.2f} pages per episode ({self.alerts:,} alerts, "
            f"{self.pages:,} pages, {self.alerts / max(self.patients, 1):.1f} alerts per "
            f"patient, {self.held_back:,} results held back as within the RCV); first "
            f"paging-grade result to its page: {delay} over {len(self.delays_h):,} episodes, "
            f"{self.unpaged} never paged"
        )


def noisy_values(spec: NoisySpec | None = None) -> list[bytes]:
    """The noisy cohort's results (default ``NoisySpec()``: 200 patients, 42 days)."""
    return [m.value for m in simulate_noisy_cohort(spec or NoisySpec())]


def measure_fatigue(values: list[bytes], hysteresis: bool, page_grade: int = 3) -> FatigueReport:
    """Replay ``values`` with hysteresis on or off; see the module docstring."""
    now = datetime(2026, 12, 1, tzinfo=UTC)
    detector = Detector(DetectorSettings(hysteresis=hysteresis, page_grade=page_grade))
    grader = Detector(DetectorSettings(hysteresis=False, page_grade=page_grade))
    states: dict[str, PatientState] = {}
    graded_states: dict[str, PatientState] = {}
    alerts: list[Alert] = []
    # (patient, condition) -> [(collected_at, evaluated grade)] in arrival order
    grades: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
    for value in values:
        result = parse_result(value)
        pid = result.patient_id
        fp = raw_fingerprint(value)
        outcome = detector.process(states.get(pid), result, now, fp)
        states[pid] = outcome.state
        alerts.extend(outcome.alerts)
        graded = grader.process(graded_states.get(pid), result, now, fp).state
        graded_states[pid] = graded
        for condition, grade in grader.current_grades(graded).items():
            if grade is not None and condition is not Condition.FEBRILE_NEUTROPENIA:
                grades[(pid, condition.value)].append((result.collected_ts, grade))

    episodes: dict[str, list[Alert]] = defaultdict(list)
    opened_at: dict[tuple[str, str], list[float]] = defaultdict(list)
    for alert in alerts:
        episodes[alert.dedup_key].append(alert)
        if alert.event == "new":
            opened_at[(alert.patient_id, alert.condition)].append(alert.collected_at.timestamp())
    delays: list[float] = []
    unpaged = 0
    for episode in episodes.values():
        opened = episode[0]
        key = (opened.patient_id, opened.condition)
        start = opened.collected_at.timestamp()
        end = min((t for t in opened_at[key] if t > start), default=float("inf"))
        series = grades[key]
        paging = [t for t, g in series if start <= t < end and g >= page_grade]
        if not paging:
            continue
        page = next((a for a in episode if a.page), None)
        if page is None:
            unpaged += 1
            continue
        delays.append((page.collected_at.timestamp() - paging[0]) / 3600)
    held = sum(len(ids) for s in states.values() for ids in s.suppressed.values())
    return FatigueReport(
        results=len(values),
        patients=len(states),
        episodes=len(episodes),
        alerts=len(alerts),
        pages=sum(a.page for a in alerts),
        held_back=held,
        delays_h=tuple(delays),
        unpaged=unpaged,
    )
