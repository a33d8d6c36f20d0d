"""The watch list folded from patient summaries: window, wards, ranking, tombstones, masking."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.watch import (
    Fever,
    LatestCount,
    OpenEpisodeRef,
    PatientSummary,
    make_watch_id,
)
from monitor.dashboard.view import MASK
from monitor.dashboard.watchlist import WatchList

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
PSEUDONYM = Pseudonymizer(b"watchlist-test-pseudonym-key-1b9e")


def summary(
    patient: str,
    day: float,
    anc: float | None = None,
    ward: str | None = "oncology-4b",
    fever_hours_ago: float | None = None,
    episodes: tuple[tuple[str, int], ...] = (),
) -> PatientSummary:
    counts = {}
    if anc is not None:
        counts["neutrophils"] = LatestCount(
            value=anc,
            unit="10^9/L",
            grade=None,
            collected_at=NOW - timedelta(hours=2),
            previous=None,
            direction=None,
        )
    return PatientSummary(
        watch_id=make_watch_id(patient, (NOW - timedelta(days=day)).timestamp()),
        patient_id=patient,
        ward=ward,
        chemo_at=NOW - timedelta(days=day),
        counts=counts,
        fever=(
            Fever(at=NOW - timedelta(hours=fever_hours_ago), celsius=38.7)
            if fever_hours_ago is not None
            else None
        ),
        episodes=[OpenEpisodeRef(condition=c, grade=g, dedup_key=f"k-{c}") for c, g in episodes],
        updated_at=NOW,
    )


def folded(*summaries: PatientSummary) -> WatchList:
    watch = WatchList((7, 14), lead_days=3)
    for s in summaries:
        watch.apply(s.patient_id, s, NOW)
    return watch


def ids(watch: WatchList, ward: str | None = None, now: datetime = NOW) -> list[str]:
    return [s.patient_id for s in watch.watched(now, ward)]


def test_only_patients_in_or_just_before_the_window_are_listed() -> None:
    watch = folded(
        summary("P-day2", 2.5, anc=3.0),
        summary("P-day5", 5.2, anc=2.9),
        summary("P-day9", 9.1, anc=1.4),
        summary("P-day14", 14.5, anc=2.0),
    )
    assert ids(watch) == ["P-day9", "P-day14", "P-day5"]
    # Two days later the day-2 patient is approaching, the day-14 one has left.
    assert ids(watch, now=NOW + timedelta(days=2)) == ["P-day9", "P-day5", "P-day2"]
    assert "P-day14" not in watch.patients  # past the window: forgotten


def test_febrile_first_then_lowest_anc_with_no_count_last() -> None:
    watch = folded(
        summary("P-low", 10, anc=0.3),
        summary("P-febrile", 8, anc=1.9, fever_hours_ago=3),
        summary("P-old-fever", 8, anc=0.8, fever_hours_ago=30),
        summary("P-none", 11),
        summary("P-mid", 12, anc=0.9),
    )
    assert ids(watch) == ["P-febrile", "P-low", "P-old-fever", "P-mid", "P-none"]


def test_ward_filter_and_wards_seen() -> None:
    watch = folded(
        summary("P-a", 9, anc=1.0, ward="oncology-4b"),
        summary("P-b", 9, anc=0.5, ward="hematology-2a"),
        summary("P-c", 9, anc=0.7, ward=None),
    )
    assert ids(watch, "oncology-4b") == ["P-a"]
    assert ids(watch, "hematology-2a") == ["P-b"]
    assert ids(watch) == ["P-b", "P-c", "P-a"]
    assert watch.wards() == {"oncology-4b", "hematology-2a"}


def test_a_tombstone_removes_a_patient_and_a_new_summary_replaces_the_old() -> None:
    watch = folded(summary("P-1", 9, anc=1.0), summary("P-2", 9, anc=2.0))
    watch.apply("P-1", summary("P-1", 9, anc=0.4, ward="hematology-2a"), NOW)
    assert ids(watch, "oncology-4b") == ["P-2"]
    assert ids(watch, "hematology-2a") == ["P-1"]
    watch.apply("P-2", None, NOW)
    assert ids(watch) == ["P-1"]
    assert watch.locate(make_watch_id("P-1", (NOW - timedelta(days=9)).timestamp())) == "P-1"
    assert watch.locate(make_watch_id("P-2", (NOW - timedelta(days=9)).timestamp())) is None
    watch.apply("P-1", summary("P-1", 15, anc=0.4), NOW)  # a summary already past the window
    assert watch.patients == {}


def test_snapshot_masks_ids_as_the_page_and_has_its_shape() -> None:
    watch = folded(
        summary("MRN-0042", 9, anc=0.8, fever_hours_ago=1, episodes=(("neutropenia", 3),))
    )
    masked = json.loads(json.dumps(watch.snapshot(NOW, "oncology-4b", False, PSEUDONYM)))
    assert "MRN-0042" not in json.dumps(masked)
    assert masked["masked"] is True
    assert masked["window"] == {"first_day": 7, "last_day": 14, "lead_days": 3}
    (row,) = masked["patients"]
    assert row["patient"] == "ref:" + PSEUDONYM("MRN-0042")
    assert row["days_since_chemo"] == 9
    assert row["phase"] == "nadir"
    assert row["febrile"] is True
    assert row["counts"]["neutrophils"]["value"] == 0.8
    assert row["episodes"] == [
        {"condition": "neutropenia", "grade": 3, "dedup_key": "k-neutropenia"}
    ]
    assert watch.snapshot(NOW, None, False, None)["patients"][0]["patient"] == MASK
    assert watch.snapshot(NOW, None, True, None)["patients"][0]["patient"] == "MRN-0042"
    assert watch.snapshot(NOW, "surgery-1", True, None)["patients"] == []
