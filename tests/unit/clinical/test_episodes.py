from __future__ import annotations

import pytest

from monitor.clinical.alert import Event
from monitor.clinical.episodes import decide, next_event, pages
from monitor.clinical.history import Anchor, Episode
from monitor.clinical.variation import NoiseModel


@pytest.mark.parametrize(
    ("current", "new", "event"),
    [
        (0, 0, None),
        (2, 2, None),
        (0, 1, "new"),
        (0, 4, "new"),
        (1, 3, "worsened"),
        (3, 1, "improved"),
        (3, 0, "resolved"),
    ],
)
def test_next_event(current: int, new: int, event: Event | None) -> None:
    assert next_event(current, new) == event


@pytest.mark.parametrize(
    ("event", "grade", "paged"),
    [
        ("new", 3, True),
        ("worsened", 4, True),
        ("new", 2, False),
        ("improved", 3, False),
        ("resolved", 0, False),
    ],
)
def test_pages_new_or_worse_at_the_page_grade(event: Event, grade: int, paged: bool) -> None:
    assert pages(event, grade, page_grade=3) is paged


# --- the hysteresis rule (decide), pure ------------------------------------------------------

NOISE = NoiseModel()


def episode(grade: int, worst: int, anchor: Anchor | None) -> Episode:
    return Episode(grade, 1, "key", 0.0, 0.0, worst_grade=worst, anchor=anchor)


def anc(value: float, result_id: str = "r-new", derived: bool = False) -> Anchor:
    return Anchor("neutrophils", value, result_id, derived)


ANCHOR = anc(0.95, "r-anchor")


@pytest.mark.parametrize(
    ("ep", "new", "observed", "event", "why"),
    [
        (None, 3, anc(0.95), "new", "worse-than-reached"),
        (episode(0, 4, ANCHOR), 1, anc(1.7), "new", "worse-than-reached"),  # resolved: new
        (episode(3, 3, ANCHOR), 4, anc(0.49), "worsened", "worse-than-reached"),
        (episode(3, 3, ANCHOR), 2, anc(1.05), None, "within-rcv"),
        (episode(3, 3, ANCHOR), 2, anc(1.40), "improved", "beyond-rcv"),
        (episode(3, 3, ANCHOR), 0, anc(1.9), "resolved", "beyond-rcv"),
        (episode(2, 4, anc(1.3, "r-anchor")), 3, anc(0.99), None, "within-rcv"),
        (episode(2, 4, anc(1.3, "r-anchor")), 4, anc(0.45), "worsened", "beyond-rcv"),
        (episode(3, 3, None), 2, anc(1.05), "improved", "not-comparable"),  # old state
        (episode(3, 3, ANCHOR), 2, anc(1.05, derived=True), "improved", "not-comparable"),
        (episode(3, 3, ANCHOR), 2, anc(1.05, "r-anchor"), "improved", "not-comparable"),
        (episode(3, 3, ANCHOR), 2, None, "improved", "not-comparable"),
        (episode(3, 3, ANCHOR), 3, anc(0.5), None, None),
    ],
)
def test_decide(
    ep: Episode | None, new: int, observed: Anchor | None, event: Event | None, why: str | None
) -> None:
    gate = decide(ep, new, observed, NOISE)
    assert gate.event == event
    assert gate.why == why
    assert gate.suppressed is (why == "within-rcv")


def test_decide_without_noise_model_is_every_crossing() -> None:
    gate = decide(episode(3, 3, ANCHOR), 2, anc(1.05), None)
    assert (gate.event, gate.why) == ("improved", "every-crossing")


def test_decide_never_compares_what_the_caller_marks_not_comparable() -> None:
    gate = decide(episode(3, 3, ANCHOR), 0, anc(1.05), NOISE, comparable=False)
    assert (gate.event, gate.why) == ("resolved", "not-comparable")


def test_decide_reports_the_comparison() -> None:
    gate = decide(episode(3, 3, ANCHOR), 2, anc(1.40), NOISE)
    assert gate.compared_with == 0.95
    assert gate.change == pytest.approx(1.40 / 0.95 - 1, abs=1e-4)
    assert gate.rcv is not None
    assert gate.rcv > 0
    assert gate.rcv_exceeded is True
