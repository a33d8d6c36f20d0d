"""``known_zero`` never claims what evaluating would contradict: on simulated cohorts, every
condition it calls known is graded 0 or not at all by ``Evaluator.evaluate``."""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.clinical.analytes import Condition
from monitor.clinical.detector import Detector
from monitor.clinical.evaluation import LINE_CONDITIONS, known_zero
from monitor.clinical.history import PatientState
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.stream.replay import replay_messages

_NOW = datetime(2026, 12, 1, tzinfo=UTC)


class _Checking(Detector):
    """A detector that checks ``known_zero`` against evaluation after every event."""

    checked = 0

    def _check(self, state: PatientState) -> None:
        evaluator = self._evaluator
        evaluator.forget()
        newest = next((e for e in reversed(state.history) if e.alertable), None)
        normal_line = False
        if newest is not None and newest is state.history[-1]:
            for condition in LINE_CONDITIONS:
                graded = evaluator.evaluate(state, condition)
                if graded is not None and graded.entry is newest and graded.grade == 0:
                    normal_line = True
        for condition in Condition:
            if known_zero(state, condition, normal_line):
                graded = evaluator.evaluate(state, condition)
                assert graded is None or graded.grade == 0
                self.checked += 1

    def process(self, state, result, now=None, content_hash=None):  # type: ignore[no-untyped-def]
        outcome = super().process(state, result, now, content_hash)
        self._check(outcome.state)
        return outcome

    def process_vital(self, state, vital, now=None):  # type: ignore[no-untyped-def]
        outcome = super().process_vital(state, vital, now)
        self._check(outcome.state)
        return outcome


def test_known_zero_agrees_with_evaluation() -> None:
    messages = simulate_cohort(CohortSpec(seed=13, patients=12, hl7v2_share=0.0, fhir_share=0.0))
    detector = _Checking()
    replay_messages(messages, detector=detector, clock=lambda: _NOW)
    assert detector.checked > 100
