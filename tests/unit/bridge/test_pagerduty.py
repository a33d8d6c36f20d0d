"""PagerDuty Events v2 payloads: triggers for pages, resolves for triggered episodes."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.pagerduty import PagerDutyOutput, resolve_event, trigger_event
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert
from tests.unit.bridge.alerts import PATIENT, make_alert

KEY = b"unit-test-pseudonym-key-0123456789"
ROUTING = "R0UT1NGKEY0123456789012345678901"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def episode_ref(dedup_key: str) -> str:
    """HMAC-SHA256(key, "episode" + dedup_key), first 32 hex digits, as documented."""
    return hmac.new(KEY, ("episode" + dedup_key).encode(), hashlib.sha256).hexdigest()[:32]


@pytest.fixture
def output() -> PagerDutyOutput:
    return PagerDutyOutput(ROUTING, Pseudonymizer(KEY))


def changes(*alerts: Alert) -> list[Change]:
    book = EpisodeBook()
    applied = [book.apply(alert) for alert in alerts]
    return [change for change in applied if change is not None]


def test_trigger_has_the_events_v2_shape() -> None:
    alert = make_alert("worsened", 3, 2)
    event = trigger_event(ROUTING, alert, "0123456789abcdef", "e" * 32)
    assert event["routing_key"] == ROUTING
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "e" * 32
    payload = event["payload"]
    assert set(payload) == {
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    }
    assert payload["summary"] == alert.summary
    assert (payload["source"], payload["severity"]) == ("cbc-monitor", "critical")
    assert (payload["component"], payload["group"], payload["class"]) == (
        "neutropenia",
        "oncology-4b",
        "cytopenia",
    )
    assert payload["custom_details"]["patient_ref"] == "0123456789abcdef"
    assert payload["custom_details"]["grade"] == 3


def test_pd_events_carry_a_keyed_dedup_key_and_no_result_or_alert_id(
    output: PagerDutyOutput,
) -> None:
    """The alert's dedup_key is an unkeyed hash of the patient id, the condition, the episode
    number and the opening result id: with the condition and a result id next to it, the
    patient id can be brute-forced. None of the three may reach PagerDuty."""
    alerts = [make_alert("new", 3), make_alert("resolved", 0, 3, hours=24)]
    events = [event for change in changes(*alerts) for event in output.on_change(change, NOW)]
    raw = alerts[0].dedup_key
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", episode_ref(raw)),
        ("resolve", episode_ref(raw)),
    ]
    details = events[0]["payload"]["custom_details"]
    assert not {"result_id", "alert_id", "dedup_key"} & set(details)
    sent = json.dumps(events)
    for secret in (raw, alerts[0].result_id, alerts[0].alert_id, PATIENT):
        assert secret not in sent


@pytest.mark.parametrize("severity", ["critical", "warning", "info"])
def test_severity_maps_one_to_one(severity: str) -> None:
    alert = make_alert("new", 3).model_copy(update={"severity": severity})
    assert trigger_event(ROUTING, alert, "ref", "ep")["payload"]["severity"] == severity


def test_nothing_in_a_pd_event_names_the_patient(output: PagerDutyOutput) -> None:
    events = [
        event
        for change in changes(make_alert("new", 3), make_alert("resolved", 0, 3, hours=24))
        for event in output.on_change(change, NOW)
    ]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert PATIENT not in json.dumps(events)


def test_only_pages_trigger_and_only_triggered_episodes_resolve(output: PagerDutyOutput) -> None:
    quiet = changes(
        make_alert("new", 1),
        make_alert("worsened", 2, 1, hours=1),
        make_alert("resolved", 0, 2, hours=2),
    )
    assert [output.on_change(change, NOW) for change in quiet] == [[], [], []]
    paged = changes(
        make_alert("new", 2),
        make_alert("worsened", 3, 2, hours=1),
        make_alert("improved", 2, 3, hours=2),
        make_alert("resolved", 0, 2, hours=3),
    )
    actions = [[e["event_action"] for e in output.on_change(change, NOW)] for change in paged]
    assert actions == [[], ["trigger"], [], ["resolve"]]
    resolve = resolve_event(ROUTING, episode_ref(paged[0].alert.dedup_key))
    assert output.on_change(paged[-1], NOW) == [resolve]


def test_resolve_of_an_unseen_episode_is_sent(output: PagerDutyOutput) -> None:
    (change,) = changes(make_alert("resolved", 0, 3))
    assert [e["event_action"] for e in output.on_change(change, NOW)] == ["resolve"]


def test_startup_replays_in_order_but_skips_triggers_of_episodes_already_over(
    output: PagerDutyOutput,
) -> None:
    since = changes(
        make_alert("new", 3, condition="neutropenia"),
        make_alert("new", 4, condition="thrombocytopenia"),
        make_alert("resolved", 0, 3, condition="neutropenia", hours=5),
    )
    events = output.startup(EpisodeBook(), since, NOW)
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", episode_ref(since[1].alert.dedup_key)),
        ("resolve", episode_ref(since[0].alert.dedup_key)),
    ]


def test_a_first_run_triggers_every_open_episode_that_has_paged(output: PagerDutyOutput) -> None:
    """A group without any commit never sent anything: the open episodes that paged must page
    now (PagerDuty folds a trigger of an incident still open into it by dedup_key)."""
    book = EpisodeBook()
    for alert in (
        make_alert("new", 3, condition="neutropenia"),
        make_alert("improved", 2, 3, condition="neutropenia", hours=5),
        make_alert("new", 4, condition="thrombocytopenia"),
        make_alert("new", 2, condition="anemia"),  # open, never paged
        make_alert("new", 3, condition="leukopenia"),
        make_alert("resolved", 0, 3, condition="leukopenia", hours=5),  # over
    ):
        assert book.apply(alert) is not None
    events = output.startup(book, [], NOW, first_run=True)
    triggered = {
        e["payload"]["component"]: (e["event_action"], e["payload"]["severity"], e["dedup_key"])
        for e in events
    }
    assert len(events) == len(triggered) == 2
    neutropenia = make_alert("new", 3, condition="neutropenia").dedup_key
    # the improved episode pages at the severity of its current grade, not its alert's "info"
    assert triggered["neutropenia"] == ("trigger", "warning", episode_ref(neutropenia))
    assert triggered["thrombocytopenia"][:2] == ("trigger", "critical")
    assert PATIENT not in json.dumps(events)


def test_a_restart_of_a_known_group_does_not_retrigger_everything(
    output: PagerDutyOutput,
) -> None:
    book = EpisodeBook()
    assert book.apply(make_alert("new", 3)) is not None
    assert output.startup(book, [], NOW) == []


def test_pagerduty_has_no_keepalive(output: PagerDutyOutput) -> None:
    book = EpisodeBook()
    book.apply(make_alert("new", 3))
    assert output.keepalive(book, NOW) == []


def test_a_routing_key_is_required() -> None:
    with pytest.raises(ValueError, match="routing key"):
        PagerDutyOutput("", Pseudonymizer(KEY))


def test_a_retraction_resolves_what_was_triggered(output: PagerDutyOutput) -> None:
    paged = changes(make_alert("new", 4), make_alert("retracted", 0, 4, hours=2))
    actions = [[e["event_action"] for e in output.on_change(change, NOW)] for change in paged]
    assert actions == [["trigger"], ["resolve"]]
    assert output.on_change(paged[-1], NOW) == [
        resolve_event(ROUTING, episode_ref(paged[0].alert.dedup_key))
    ]
