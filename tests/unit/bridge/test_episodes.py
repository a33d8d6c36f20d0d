"""The bridge's episode book: what each alert does to its episode."""

from __future__ import annotations

from datetime import timedelta

from monitor.bridge.episodes import EpisodeBook
from tests.builders import cbc, replay
from tests.unit.bridge.alerts import make_alert


def test_new_opens_an_episode_with_its_first_alert() -> None:
    book = EpisodeBook()
    alert = make_alert("new", 2)
    change = book.apply(alert)
    assert change is not None
    assert change.before is None
    assert change.after.open
    assert (change.after.grade, change.after.severity) == (2, "warning")
    assert change.after.first == alert
    assert [e.dedup_key for e in book.open_episodes()] == [alert.dedup_key]


def test_worsened_keeps_the_first_alert_and_reports_the_previous_state() -> None:
    book = EpisodeBook()
    first = make_alert("new", 2)
    book.apply(first)
    change = book.apply(make_alert("worsened", 3, 2, hours=24))
    assert change is not None
    assert change.before is not None
    assert change.before.grade == 2
    assert (change.after.grade, change.after.severity) == (3, "critical")
    assert change.after.first == first
    assert change.after.paged


def test_improved_stays_open_at_the_severity_of_its_new_grade() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 4))
    change = book.apply(make_alert("improved", 2, 4, hours=24))
    assert change is not None
    assert change.alert.severity == "info"  # the alert itself is information
    assert change.after.open
    assert (change.after.grade, change.after.severity) == (2, "warning")
    assert change.after.paged  # it paged at grade 4 earlier


def test_resolved_closes_the_episode_at_its_last_grade() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 3))
    change = book.apply(make_alert("resolved", 0, 3, hours=48))
    assert change is not None
    assert not change.after.open
    assert change.after.grade == 3
    assert list(book.open_episodes()) == []
    assert len(book) == 0


def test_a_repeated_alert_changes_nothing() -> None:
    book = EpisodeBook()
    alert = make_alert("new", 3)
    assert book.apply(alert) is not None
    assert book.apply(alert) is None
    assert (
        book.apply(alert.model_copy(update={"emitted_at": alert.emitted_at + timedelta(1)})) is None
    )


def test_alerts_after_the_resolve_are_ignored() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 2))
    book.apply(make_alert("resolved", 0, 2, hours=24))
    assert book.apply(make_alert("worsened", 3, 2, hours=12)) is None
    assert len(book) == 0


def test_an_alert_older_on_both_clocks_is_ignored_but_a_later_one_applies() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 2, hours=0))
    book.apply(make_alert("worsened", 4, 2, hours=48))
    assert book.apply(make_alert("worsened", 3, 2, hours=24)) is None
    episode = book.get(make_alert("new", 2).dedup_key)
    assert episode is not None
    assert episode.grade == 4
    assert book.apply(make_alert("improved", 2, 4, hours=72)) is not None


def test_a_resolve_for_an_unknown_episode_is_remembered_as_closed() -> None:
    book = EpisodeBook()
    change = book.apply(make_alert("resolved", 0, 3))
    assert change is not None
    assert change.before is None
    assert not change.after.open
    assert change.after.grade == 3
    assert book.apply(make_alert("new", 3)) is None  # late, for an episode already over


def test_episodes_are_kept_apart_by_dedup_key() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 3, condition="neutropenia"))
    book.apply(make_alert("new", 1, condition="leukopenia"))
    book.apply(make_alert("new", 2, patient_id="MRN-OTHER"))
    book.apply(make_alert("resolved", 0, 1, condition="leukopenia", hours=5))
    assert sorted((e.last.patient_id, e.last.condition) for e in book.open_episodes()) == [
        ("MRN-OTHER", "neutropenia"),
        ("MRN-SECRET-0042", "neutropenia"),
    ]


def test_closed_episodes_are_forgotten_oldest_first_beyond_the_cap() -> None:
    book = EpisodeBook(closed_kept=2)
    for episode in (1, 2, 3):
        book.apply(make_alert("new", 1, episode=episode))
        book.apply(make_alert("resolved", 0, 1, episode=episode, hours=1))
    assert book.get(make_alert("new", 1, episode=1).dedup_key) is None
    assert book.get(make_alert("new", 1, episode=3).dedup_key) is not None


def test_the_detector_s_own_alerts_drive_the_book_through_a_whole_episode() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, neutrophils=4.0),
            cbc("r2", 24, neutrophils=1.6),  # grade 1 new
            cbc("r3", 48, neutrophils=0.7),  # grade 3 worsened
            cbc("r4", 72, neutrophils=1.2),  # grade 2 improved
            cbc("r5", 96, neutrophils=2.5),  # resolved
        ]
    )
    book = EpisodeBook()
    states = []
    for alert in alerts:
        change = book.apply(alert)
        assert change is not None
        states.append((change.after.open, change.after.grade, change.after.severity))
    assert states == [
        (True, 1, "info"),
        (True, 3, "critical"),
        (True, 2, "warning"),
        (False, 2, "warning"),
    ]
    assert all(book.apply(alert) is None for alert in alerts)


def test_retracted_closes_the_episode_like_resolved() -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 4))
    change = book.apply(make_alert("retracted", 0, 4, hours=2))
    assert change is not None
    assert not change.after.open
    assert change.after.grade == 4
    assert len(book) == 0
    assert book.apply(make_alert("worsened", 4, 3, hours=3)) is None
