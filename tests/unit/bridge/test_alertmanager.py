"""What the bridge posts to Alertmanager: labels, annotations, retired labelsets, keep-alive."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.bridge.alertmanager import AlertmanagerOutput, labels_of
from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert
from tests.unit.bridge.alerts import PATIENT, T0, make_alert

KEY = b"unit-test-pseudonym-key-0123456789"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=60)


@pytest.fixture
def output() -> AlertmanagerOutput:
    return AlertmanagerOutput(Pseudonymizer(KEY), INTERVAL)


def apply_all(book: EpisodeBook, *alerts: Alert) -> list[Change]:
    changes = [book.apply(alert) for alert in alerts]
    assert all(change is not None for change in changes)
    return [change for change in changes if change is not None]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_labels_are_exactly_the_routing_set(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    (change,) = apply_all(book, make_alert("new", 3))
    labels = output.firing(change.after, NOW)["labels"]
    assert labels == {
        "alertname": "CytopeniaEpisode",
        "source": "cbc-monitor",
        "condition": "neutropenia",
        "severity": "critical",
        "grade": "3",
        "ward": "oncology-4b",
        "dedup_key": episode_ref(change.alert.dedup_key),
        "patient_ref": Pseudonymizer(KEY)(PATIENT),
    }
    assert len(labels["patient_ref"]) == 16


def episode_ref(dedup_key: str) -> str:
    """HMAC-SHA256(key, "episode" + dedup_key), first 32 hex digits, as documented."""
    return hmac.new(KEY, ("episode" + dedup_key).encode(), hashlib.sha256).hexdigest()[:32]


def test_the_dedup_key_label_is_keyed_never_the_alerts_own(output: AlertmanagerOutput) -> None:
    """The alert's dedup_key is an unkeyed hash of the patient id (and the condition, episode
    number and opening result id, all in the annotations): it must not leave the bridge."""
    book = EpisodeBook()
    changes = apply_all(
        book,
        make_alert("new", 2),
        make_alert("worsened", 3, 2, hours=24),
        make_alert("resolved", 0, 3, hours=48),
    )
    raw = changes[0].alert.dedup_key
    posted = [alert for change in changes for alert in output.alerts_for(change, NOW)]
    assert {alert["labels"]["dedup_key"] for alert in posted} == {episode_ref(raw)}
    for alert in posted:
        assert raw not in json.dumps(alert)
    # deterministic given the key (a restarted bridge rebuilds the same labelsets) and keyed
    assert Pseudonymizer(KEY).episode_ref(raw) == episode_ref(raw)
    assert Pseudonymizer(b"another-key-of-enough-length").episode_ref(raw) != episode_ref(raw)


def test_no_label_carries_the_patient_id_whatever_the_event(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    changes = apply_all(
        book,
        make_alert("new", 2),
        make_alert("worsened", 4, 2, hours=24),
        make_alert("improved", 1, 4, hours=48),
        make_alert("resolved", 0, 1, hours=72),
    )
    posted = [alert for change in changes for alert in output.alerts_for(change, NOW)]
    assert len(posted) == 6  # fire, retire+fire, retire+fire, retire
    for alert in posted:
        assert not any(PATIENT in value for value in alert["labels"].values())
        assert alert["annotations"]["patient_id"] == PATIENT


def test_annotations_carry_what_a_person_reads(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    (change,) = apply_all(book, make_alert("new", 3))
    annotations = output.firing(change.after, NOW)["annotations"]
    alert = change.alert
    assert annotations == {
        "summary": alert.summary,
        "patient_id": PATIENT,
        "event": "new",
        "alert_id": alert.alert_id,
        "result_id": alert.result_id,
        "collected_at": alert.collected_at.isoformat(),
        "ctcae_version": "5.0",
        "days_since_chemo": "10",
        "in_nadir_window": "true",
    }


def test_a_missing_ward_is_labelled_unknown(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    (change,) = apply_all(book, make_alert("new", 1, ward=None))
    assert labels_of(change.after, Pseudonymizer(KEY))["ward"] == "unknown"


def test_firing_starts_at_the_first_alert_and_ends_four_intervals_ahead(
    output: AlertmanagerOutput,
) -> None:
    book = EpisodeBook()
    first, worse = make_alert("new", 2), make_alert("worsened", 3, 2, hours=24)
    _, change = apply_all(book, first, worse)
    posted = output.firing(change.after, NOW)
    assert posted["startsAt"] == iso(first.emitted_at)
    assert posted["endsAt"] == iso(NOW + 4 * INTERVAL)


def test_a_start_in_the_future_is_clamped_to_now(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    (change,) = apply_all(book, make_alert("new", 2))
    early = T0 - timedelta(days=1)
    assert output.firing(change.after, early)["startsAt"] == iso(early)
    assert output.alerts_for(change, early)[0]["startsAt"] == iso(early)


def test_worsened_retires_the_previous_labelset_and_fires_the_new_one(
    output: AlertmanagerOutput,
) -> None:
    book = EpisodeBook()
    _, change = apply_all(book, make_alert("new", 2), make_alert("worsened", 3, 2, hours=24))
    retired, fired = output.alerts_for(change, NOW)
    assert (retired["labels"]["grade"], retired["labels"]["severity"]) == ("2", "warning")
    assert retired["endsAt"] == iso(NOW)
    assert retired["annotations"]["event"] == "worsened"
    assert (fired["labels"]["grade"], fired["labels"]["severity"]) == ("3", "critical")
    assert fired["endsAt"] == iso(NOW + 4 * INTERVAL)
    assert retired["labels"]["dedup_key"] == fired["labels"]["dedup_key"]
    assert retired["startsAt"] == fired["startsAt"]


def test_improved_keeps_the_episode_firing_at_its_new_grade(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    _, change = apply_all(book, make_alert("new", 4), make_alert("improved", 2, 4, hours=24))
    retired, fired = output.alerts_for(change, NOW)
    assert (retired["labels"]["grade"], retired["labels"]["severity"]) == ("4", "critical")
    assert (fired["labels"]["grade"], fired["labels"]["severity"]) == ("2", "warning")
    assert fired["annotations"]["event"] == "improved"


def test_resolved_ends_the_labelset_that_was_firing(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    _, change = apply_all(book, make_alert("new", 3), make_alert("resolved", 0, 3, hours=24))
    (retired,) = output.alerts_for(change, NOW)
    assert (retired["labels"]["grade"], retired["labels"]["severity"]) == ("3", "critical")
    assert retired["endsAt"] == iso(NOW)
    assert retired["annotations"]["event"] == "resolved"


def test_a_resolve_of_an_unseen_episode_ends_its_last_grade(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    (change,) = apply_all(book, make_alert("resolved", 0, 3))
    (retired,) = output.alerts_for(change, NOW)
    assert (retired["labels"]["grade"], retired["labels"]["severity"]) == ("3", "critical")
    assert retired["endsAt"] == iso(NOW)


def test_a_ward_move_at_the_same_grade_retires_the_old_labelset(
    output: AlertmanagerOutput,
) -> None:
    book = EpisodeBook()
    _, change = apply_all(
        book,
        make_alert("new", 2, ward="oncology-4b"),
        make_alert("worsened", 2, 2, hours=24, ward="icu-2"),
    )
    retired, fired = output.alerts_for(change, NOW)
    assert (retired["labels"]["ward"], fired["labels"]["ward"]) == ("oncology-4b", "icu-2")


def test_one_change_is_one_request(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    _, change = apply_all(book, make_alert("new", 2), make_alert("worsened", 3, 2, hours=24))
    (request,) = output.on_change(change, NOW)
    assert [a["labels"]["grade"] for a in request] == ["2", "3"]
    json.dumps(request)  # a JSON body as it is


def test_keepalive_refreshes_every_open_episode_and_no_closed_one(
    output: AlertmanagerOutput,
) -> None:
    book = EpisodeBook()
    apply_all(
        book,
        make_alert("new", 3, condition="neutropenia"),
        make_alert("new", 1, condition="leukopenia"),
        make_alert("new", 2, condition="anemia"),
        make_alert("resolved", 0, 2, condition="anemia", hours=3),
    )
    later = NOW + INTERVAL
    (request,) = output.keepalive(book, later)
    assert sorted(a["labels"]["condition"] for a in request) == ["leukopenia", "neutropenia"]
    assert {a["endsAt"] for a in request} == {iso(later + 4 * INTERVAL)}
    assert {a["startsAt"] for a in request} == {iso(T0 + timedelta(seconds=2))}


def test_keepalive_posts_in_batches(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    for number in range(1201):
        book.apply(make_alert("new", 1, patient_id=f"P-{number}"))
    assert [len(request) for request in output.keepalive(book, NOW)] == [500, 500, 201]


def test_keepalive_of_nothing_posts_nothing(output: AlertmanagerOutput) -> None:
    assert output.keepalive(EpisodeBook(), NOW) == []


def firing_and_ended(requests: list[list[dict[str, Any]]]) -> tuple[set[str], set[str]]:
    alerts = [alert for request in requests for alert in request]
    fired = {
        f"{a['labels']['condition']}@{a['labels']['grade']}"
        for a in alerts
        if a["endsAt"] != iso(NOW)
    }
    ended = {
        f"{a['labels']['condition']}@{a['labels']['grade']}"
        for a in alerts
        if a["endsAt"] == iso(NOW)
    }
    return fired, ended


def test_startup_fires_open_episodes_and_ends_labelsets_retired_since_the_commit(
    output: AlertmanagerOutput,
) -> None:
    book = EpisodeBook()
    before_commit = apply_all(
        book,
        make_alert("new", 2, condition="neutropenia"),
        make_alert("new", 1, condition="leukopenia"),
        make_alert("new", 1, condition="anemia"),
        make_alert("resolved", 0, 1, condition="anemia", hours=1),
    )
    assert before_commit
    since_commit = apply_all(
        book,
        make_alert("worsened", 3, 2, condition="neutropenia", hours=24),
        make_alert("resolved", 0, 1, condition="leukopenia", hours=24),
        make_alert("new", 2, condition="thrombocytopenia", hours=24),
    )
    fired, ended = firing_and_ended(output.startup(book, since_commit, NOW))
    assert fired == {"neutropenia@3", "thrombocytopenia@2"}
    # anemia ended before the commit: it was posted then, nothing to do now
    assert ended == {"neutropenia@2", "leukopenia@1"}


def test_startup_does_not_end_a_labelset_that_fires_again(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    apply_all(book, make_alert("new", 3))
    since_commit = apply_all(
        book, make_alert("improved", 2, 3, hours=24), make_alert("worsened", 3, 2, hours=48)
    )
    fired, ended = firing_and_ended(output.startup(book, since_commit, NOW))
    assert fired == {"neutropenia@3"}
    assert ended == {"neutropenia@2"}


def test_a_resend_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AlertmanagerOutput(Pseudonymizer(KEY), timedelta(0))


def test_a_first_run_fires_every_open_episode_and_ends_nothing(
    output: AlertmanagerOutput,
) -> None:
    """A group without any commit never posted anything: nothing to end, everything to fire."""
    book = EpisodeBook()
    apply_all(
        book,
        make_alert("new", 3, condition="neutropenia"),
        make_alert("new", 1, condition="anemia"),
        make_alert("resolved", 0, 1, condition="anemia", hours=1),
        make_alert("new", 1, condition="leukopenia"),
    )
    fired, ended = firing_and_ended(output.startup(book, [], NOW, first_run=True))
    assert (fired, ended) == ({"neutropenia@3", "leukopenia@1"}, set())


def test_retracted_ends_the_labelset_that_was_firing(output: AlertmanagerOutput) -> None:
    book = EpisodeBook()
    _, change = apply_all(book, make_alert("new", 4), make_alert("retracted", 0, 4, hours=2))
    (retired,) = output.alerts_for(change, NOW)
    assert (retired["labels"]["grade"], retired["labels"]["severity"]) == ("4", "critical")
    assert retired["endsAt"] == iso(NOW)
    assert retired["annotations"]["event"] == "retracted"
