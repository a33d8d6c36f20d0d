"""The dashboard's view folded from alerts: episodes, counts, the feed, masking, JSON shape."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert
from monitor.clinical.model import CBCResult
from monitor.dashboard.view import MASK, DashboardView, mask_patient_id
from tests.builders import T0, cbc, replay

PATIENT = "MRN-0042"
PSEUDONYM = Pseudonymizer(b"view-test-pseudonym-key-7f3a")


def first_alerts(result: CBCResult) -> list[Alert]:
    """The alerts of one patient's first result (each patient needs a state of its own)."""
    return replay([result])[1]


def neutropenia_course() -> list[Alert]:
    """new G3 -> worsened G4 -> improved G2 -> resolved, for one patient."""
    _, alerts, _ = replay(
        [
            cbc("r1", 0, patient_id=PATIENT, neutrophils=0.8),
            cbc("r2", 24, patient_id=PATIENT, neutrophils=0.4),
            cbc("r3", 48, patient_id=PATIENT, neutrophils=1.2),
            cbc("r4", 72, patient_id=PATIENT, neutrophils=2.5),
        ]
    )
    assert [(a.event, a.grade) for a in alerts] == [
        ("new", 3),
        ("worsened", 4),
        ("improved", 2),
        ("resolved", 0),
    ]
    return alerts


def test_new_opens_an_episode_with_its_context() -> None:
    new = neutropenia_course()[0]
    view = DashboardView()
    assert view.apply(new)
    (episode,) = view.episodes.values()
    assert episode.dedup_key == new.dedup_key
    assert (episode.condition, episode.grade, episode.severity) == ("neutropenia", 3, "critical")
    assert episode.ward == "oncology-4b"
    assert episode.opened_at == T0
    assert episode.last_event == "new"


def test_worsened_and_improved_update_grade_but_keep_the_opening_time() -> None:
    new, worsened, improved, _ = neutropenia_course()
    view = DashboardView()
    view.apply(new)
    view.apply(worsened)
    episode = view.episodes[new.dedup_key]
    assert (episode.grade, episode.last_event, episode.severity) == (4, "worsened", "critical")
    view.apply(improved)
    assert (episode.grade, episode.last_event) == (2, "improved")
    # The episode's severity follows its grade, not the improved alert's "info".
    assert episode.severity == "warning"
    assert episode.opened_at == T0
    assert episode.last_event_at == T0 + timedelta(hours=48)


def test_resolved_removes_the_episode_and_a_late_repeat_does_not_reopen_it() -> None:
    course = neutropenia_course()
    view = DashboardView()
    for alert in course:
        view.apply(alert)
    assert view.episodes == {}
    assert [a.event for a in view.recent] == ["resolved", "improved", "worsened", "new"]
    # A redelivered alert of that episode (same id) and an unseen one both change nothing.
    assert not view.apply(course[1])
    late = course[0].model_copy(update={"alert_id": "late-redelivery"})
    assert not view.apply(late)
    assert view.episodes == {}
    assert view.locate(course[0].dedup_key) == (PATIENT, "neutropenia")


def test_duplicate_alert_ids_are_ignored() -> None:
    new, worsened, *_ = neutropenia_course()
    view = DashboardView()
    assert view.apply(new)
    assert view.apply(worsened)
    assert not view.apply(new)
    assert not view.apply(worsened)
    assert len(view.recent) == 2
    assert view.alerts_applied == 2
    assert view.episodes[new.dedup_key].grade == 4


def test_an_episode_first_seen_mid_course_is_shown_from_that_alert() -> None:
    worsened = neutropenia_course()[1]
    view = DashboardView()
    view.apply(worsened)
    assert view.episodes[worsened.dedup_key].opened_at == worsened.collected_at


def test_counts_by_condition_and_grade_include_zeros() -> None:
    alerts = [
        *first_alerts(cbc("a1", 0, patient_id="P-A", neutrophils=0.4, platelets=40)),
        *first_alerts(cbc("b1", 0, patient_id="P-B", neutrophils=0.3)),
        *first_alerts(cbc("c1", 0, patient_id="P-C", neutrophils=1.2)),
    ]
    view = DashboardView()
    for alert in alerts:
        view.apply(alert)
    counts = view.counts()
    assert counts["neutropenia"] == {"1": 0, "2": 1, "3": 0, "4": 2}
    assert counts["thrombocytopenia"] == {"1": 0, "2": 0, "3": 1, "4": 0}
    assert counts["anemia"] == {"1": 0, "2": 0, "3": 0, "4": 0}
    assert sum(sum(row.values()) for row in counts.values()) == len(view.episodes) == 4


def test_the_feed_is_a_bounded_ring_buffer_newest_first() -> None:
    view = DashboardView(recent_max=3)
    course = neutropenia_course()
    for alert in course:
        view.apply(alert)
    assert [a.alert_id for a in view.recent] == [a.alert_id for a in reversed(course[1:])]


def test_without_a_key_the_mask_shows_nothing_of_the_id() -> None:
    # The distinguishing digits are the part an id-suffix mask would have shown.
    assert MASK == "\u2022" * 4
    for patient_id in ("MRN-0042", "MRN-0043", "MRN-0000123456", "P-1", ""):
        assert mask_patient_id(patient_id, None) == MASK


def test_with_a_key_the_mask_is_the_bridges_patient_ref() -> None:
    masked = mask_patient_id(PATIENT, PSEUDONYM)
    assert masked == "ref:" + PSEUDONYM(PATIENT)
    assert re.fullmatch(r"ref:[0-9a-f]{16}", masked)
    assert "0042" not in masked
    # Stable for a patient, different between patients whose ids differ in one digit.
    assert mask_patient_id(PATIENT, PSEUDONYM) == masked
    assert mask_patient_id("MRN-0043", PSEUDONYM) != masked


def test_snapshot_masks_every_patient_id_unless_revealed() -> None:
    view = DashboardView()
    for alert in neutropenia_course()[:2]:
        view.apply(alert)
    now = T0 + timedelta(hours=27, minutes=12)
    for pseudonym, shown in ((None, MASK), (PSEUDONYM, "ref:" + PSEUDONYM(PATIENT))):
        masked = view.snapshot(now, reveal=False, pseudonym=pseudonym)
        assert PATIENT not in json.dumps(masked)
        assert "0042" not in json.dumps(masked["episodes"][0]["patient"])
        assert masked["masked"] is True
        assert masked["episodes"][0]["patient"] == shown
        assert {item["patient"] for item in masked["recent"]} == {shown}
    revealed = view.snapshot(now, reveal=True, pseudonym=PSEUDONYM)
    assert revealed["masked"] is False
    assert revealed["episodes"][0]["patient"] == PATIENT


def test_snapshot_json_shape() -> None:
    view = DashboardView()
    for alert in neutropenia_course()[:2]:
        view.apply(alert)
    now = datetime(2026, 11, 2, 11, 12, tzinfo=UTC)
    body = json.loads(json.dumps(view.snapshot(now, reveal=False, pseudonym=PSEUDONYM)))
    assert set(body) == {
        "generated_at",
        "masked",
        "alerts_applied",
        "ward",
        "wards",
        "episodes",
        "counts",
        "recent",
    }
    assert body["ward"] is None
    assert body["wards"] == ["oncology-4b"]
    assert body["generated_at"] == now.isoformat()
    (episode,) = body["episodes"]
    assert set(episode) == {
        "dedup_key",
        "patient",
        "condition",
        "grade",
        "severity",
        "ward",
        "opened_at",
        "open_seconds",
        "last_event",
        "last_event_at",
        "summary",
    }
    assert episode["open_seconds"] == 27 * 3600 + 12 * 60
    assert episode["grade"] == 4
    assert [r["event"] for r in body["recent"]] == ["worsened", "new"]
    assert set(body["recent"][0]) >= {"alert_id", "event", "condition", "grade", "emitted_at"}


def test_episodes_are_listed_worst_grade_first() -> None:
    alerts = [
        *first_alerts(cbc("x1", 0, patient_id="P-X", neutrophils=1.2)),
        *first_alerts(cbc("y1", 5, patient_id="P-Y", neutrophils=0.3)),
    ]
    view = DashboardView()
    for alert in alerts:
        view.apply(alert)
    grades = [
        e["grade"]
        for e in view.snapshot(T0 + timedelta(days=1), reveal=True, pseudonym=None)["episodes"]
    ]
    assert grades == [4, 2]


def test_a_retraction_closes_the_episode_like_a_resolve() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, patient_id=PATIENT, neutrophils=0.3),
            CBCResult.model_validate(
                {
                    "result_id": "r1",
                    "patient_id": PATIENT,
                    "collected_at": T0.isoformat(),
                    "status": "retracted",
                }
            ),
        ]
    )
    assert [a.event for a in alerts] == ["new", "retracted"]
    view = DashboardView()
    assert view.apply(alerts[0])
    assert list(view.episodes) == [alerts[0].dedup_key]
    assert view.apply(alerts[1])
    assert view.episodes == {}
    assert view.recent[0].event == "retracted"
    assert not view.apply(alerts[0].model_copy(update={"alert_id": "late"}))
    assert view.episodes == {}


def test_a_ward_sees_only_its_episodes_counts_and_alerts() -> None:
    view = DashboardView()
    for alert in [
        *first_alerts(cbc("a1", 0, patient_id="MRN-1", ward="oncology-4b", neutrophils=0.4)),
        *first_alerts(cbc("b1", 1, patient_id="MRN-2", ward="hematology-2a", platelets=30)),
        *first_alerts(cbc("c1", 2, patient_id="MRN-3", ward=None, platelets=60)),
    ]:
        view.apply(alert)
    now = T0 + timedelta(hours=3)
    every = view.snapshot(now, reveal=True, pseudonym=None, wards=["surgery-1"])
    assert len(every["episodes"]) == 3
    assert every["wards"] == ["hematology-2a", "oncology-4b", "surgery-1"]
    ward = view.snapshot(now, reveal=True, pseudonym=None, ward="hematology-2a")
    assert ward["ward"] == "hematology-2a"
    assert [(e["patient"], e["condition"]) for e in ward["episodes"]] == [
        ("MRN-2", "thrombocytopenia")
    ]
    assert {a["patient"] for a in ward["recent"]} == {"MRN-2"}
    assert ward["counts"]["thrombocytopenia"] == {"1": 0, "2": 0, "3": 1, "4": 0}
    assert ward["counts"]["neutropenia"] == {"1": 0, "2": 0, "3": 0, "4": 0}
    assert every["counts"]["thrombocytopenia"] == {"1": 0, "2": 1, "3": 1, "4": 0}
    # The selector still lists every ward while one is chosen.
    assert ward["wards"] == ["hematology-2a", "oncology-4b"]
