"""The paging bridge against a real Alertmanager and a local PagerDuty-shaped receiver.

Alerts are the detector's own (``Detector.process`` on canonical results, stamped now), published
with aiokafka to a topic of the test's own on the embedded broker. The Alertmanager bridge runs as
a real ``cbc-monitor bridge alertmanager`` child process; Alertmanager is the Debian
``prometheus-alertmanager`` binary started with the shipped deploy/alertmanager/alertmanager.yml.
Everything is checked through Alertmanager's ``GET /api/v2/alerts``, polling with deadlines, and
the bridge's own ``/metrics`` (posts, synced, open episodes) is scraped along the way. The
keep-alive test (1 s interval) and the PagerDuty test (a local aiohttp receiver shaped like
``/v2/enqueue``) run the same ``Bridge`` in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from monitor.bridge.alertmanager import AlertmanagerOutput
from monitor.bridge.options import BridgeOptions
from monitor.bridge.pagerduty import PagerDutyOutput
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.bridge.runner import Bridge
from monitor.clinical.alert import Alert
from monitor.clinical.detector import Detector
from monitor.clinical.history import PatientState
from monitor.clinical.model import CBCResult
from monitor.kafka.clients import publish
from monitor.kafka.topics import create_topics
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import ChildProcess, find_free_port
from monitor.settings import MonitorSettings
from tests.builders import cbc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
PSEUDONYM_KEY = "integration-pseudonym-key-5d1c9a"
PARTITIONS = 4
WAIT_S = 30.0
# Long enough that a stale labelset cannot expire (endsAt = now + 4 x 30 s) while a test waits.
RESEND_INTERVAL_S = 30


def patient_ref(patient_id: str) -> str:
    return hmac.new(PSEUDONYM_KEY.encode(), patient_id.encode(), hashlib.sha256).hexdigest()[:16]


def episode_ref(dedup_key: str) -> str:
    """What the bridge sends for an episode instead of the alert's (unkeyed) dedup_key."""
    message = ("episode" + dedup_key).encode()
    return hmac.new(PSEUDONYM_KEY.encode(), message, hashlib.sha256).hexdigest()[:32]


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


# --------------------------------------------------------------------------------------------
# Alerts from the real detector


class Patients:
    """Each patient's detector state, so results can be fed a few at a time."""

    def __init__(self) -> None:
        self.detector = Detector()
        self.states: dict[str, PatientState | None] = {}

    def alerts(self, *results: CBCResult) -> list[Alert]:
        alerts: list[Alert] = []
        for result in results:
            outcome = self.detector.process(
                self.states.get(result.patient_id), result, datetime.now(UTC)
            )
            self.states[result.patient_id] = outcome.state
            alerts.extend(outcome.alerts)
        return alerts


def send(broker: EmbeddedBroker, topic: str, alerts: Sequence[Alert]) -> None:
    messages = [(a.patient_id.encode(), a.model_dump_json().encode()) for a in alerts]
    assert asyncio.run(publish(broker.bootstrap, topic, messages)) == len(messages)


def by(alerts: Sequence[Alert], condition: str) -> Alert:
    (alert,) = [a for a in alerts if a.condition == condition]
    return alert


# --------------------------------------------------------------------------------------------
# Alertmanager and the bridge as child processes


def alertmanager_binary() -> str:
    for name in ("prometheus-alertmanager", "alertmanager"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "no Alertmanager binary (prometheus-alertmanager or alertmanager) on PATH: "
        "install the Debian package prometheus-alertmanager"
    )


class Child(ChildProcess):
    """Alertmanager or a bridge; ``metrics_port`` is where a bridge serves /metrics."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        super().__init__(argv, log_path, env)
        self.metrics_port = metrics_port


class Alertmanager:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        config = root / "alertmanager.yml"
        shutil.copy(SHIPPED_CONFIG, config)
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.child = Child(
            [
                alertmanager_binary(),
                f"--config.file={config}",
                f"--storage.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            root / "alertmanager.log",
        )

    def start(self) -> Alertmanager:
        self.child.start()
        wait_for("Alertmanager to answer", self._ready)
        return self

    def _ready(self) -> bool:
        if not self.child.running():
            raise AssertionError(f"Alertmanager exited:\n{self.child.log_tail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response,
        ):
            return bool(response.status == 200)
        return False

    def alerts(self) -> list[dict[str, Any]]:
        """Active, inhibited and silenced alerts (resolved ones are not listed)."""
        with urllib.request.urlopen(self.url + "/api/v2/alerts", timeout=5) as response:
            alerts: list[dict[str, Any]] = json.loads(response.read())
        return alerts

    def episodes(self, dedup_keys: set[str]) -> list[tuple[str, str]]:
        """(condition, grade) of every alert of these episodes (by the alerts' dedup_keys),
        sorted, repeats included."""
        refs = {episode_ref(key) for key in dedup_keys}
        return sorted(
            (a["labels"]["condition"], a["labels"]["grade"])
            for a in self.alerts()
            if a["labels"].get("dedup_key") in refs
        )


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    manager = Alertmanager(tmp_path / "alertmanager").start()
    try:
        yield manager
    finally:
        manager.child.stop()


@pytest.fixture
def alert_topic(broker: EmbeddedBroker, unique_name: str) -> str:
    topic = f"{unique_name}.alerts"
    asyncio.run(create_topics(broker.bootstrap, {topic: PARTITIONS}))
    return topic


def bridge_process(
    broker: EmbeddedBroker, topic: str, manager: Alertmanager, group: str, log: Path
) -> Child:
    env = {
        **os.environ,
        "MONITOR_BROKER_URL": broker.url,
        "MONITOR_ALERTS_TOPIC": topic,
        "MONITOR_PSEUDONYM_KEY": PSEUDONYM_KEY,
    }
    port = find_free_port()
    argv = [sys.executable, "-m", "monitor.cli", "bridge", "alertmanager", "--url", manager.url]
    argv += ["--group", group, "--resend-interval", str(RESEND_INTERVAL_S)]
    argv += ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
    return Child(argv, log, env=env, metrics_port=port)


def _counted(
    bridge: Child, key: tuple[str, str | None], value: float
) -> dict[tuple[str, str | None], float] | None:
    metrics = bridge_metrics(bridge)
    return metrics if metrics[key] == value else None


def synced(bridge: Child) -> bool:
    """Whether the bridge process has posted its start-up sync (False until it serves)."""
    assert bridge.running(), bridge.log_tail()
    try:
        return bridge_metrics(bridge)[("monitor_bridge_synced", None)] == 1
    except OSError:
        return False


def bridge_metrics(bridge: Child) -> dict[tuple[str, str | None], float]:
    """The bridge's ``monitor_bridge_*`` samples from its ``/metrics``, keyed by (name,
    outcome); every sample must be labelled ``output="alertmanager"``."""
    url = f"http://127.0.0.1:{bridge.metrics_port}"
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        assert response.status == 200
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[tuple[str, str | None], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("monitor_bridge_") and not sample.name.endswith("_created"):
                assert sample.labels["output"] == "alertmanager", sample
                found[(sample.name, sample.labels.get("outcome"))] = sample.value
    return found


@pytest.fixture
def bridges(
    broker: EmbeddedBroker, alert_topic: str, alertmanager: Alertmanager, tmp_path: Path
) -> Iterator[Callable[[], Child]]:
    """Starts bridge processes (one consumer group per test); stops them all afterwards."""
    started: list[Child] = []
    group = f"{alert_topic}.bridge"

    def start() -> Child:
        log = tmp_path / f"bridge-{len(started) + 1}.log"
        child = bridge_process(broker, alert_topic, alertmanager, group, log)
        started.append(child.start())
        return child

    try:
        yield start
    finally:
        for child in started:
            child.stop()


# --------------------------------------------------------------------------------------------
# Alertmanager


def test_an_episode_fires_with_routing_labels_then_resolves(
    broker: EmbeddedBroker,
    alert_topic: str,
    alertmanager: Alertmanager,
    bridges: Callable[[], Child],
) -> None:
    patients = Patients()
    patient = "MRN-BRIDGE-7731"
    assert patients.alerts(cbc("b1", 0, patient_id=patient, neutrophils=4.0)) == []
    (new,) = patients.alerts(cbc("b2", 24, patient_id=patient, neutrophils=0.7))
    bridge = bridges()
    # Published once the start-up sync is done, so the group consumer is the one to read it.
    wait_for("the bridge to sync", lambda: synced(bridge))
    send(broker, alert_topic, [new])

    def firing() -> list[dict[str, Any]]:
        assert bridge.running(), bridge.log_tail()
        ref = episode_ref(new.dedup_key)
        return [a for a in alertmanager.alerts() if a["labels"].get("dedup_key") == ref]

    (alert,) = wait_for("the episode to fire in Alertmanager", firing)
    consumed = ("monitor_bridge_alerts_consumed_total", None)
    metrics = wait_for("the group to consume it", lambda: _counted(bridge, consumed, 1))
    assert metrics[("monitor_bridge_synced", None)] == 1
    assert metrics[("monitor_bridge_open_episodes", None)] == 1
    assert metrics[("monitor_bridge_posts_total", "ok")] >= 1
    assert metrics[("monitor_bridge_posts_total", "http_error")] == 0
    assert metrics[("monitor_bridge_retrying", None)] == 0
    assert metrics[("monitor_bridge_last_success_timestamp_seconds", None)] > time.time() - WAIT_S
    assert alert["labels"] == {
        "alertname": "CytopeniaEpisode",
        "source": "cbc-monitor",
        "condition": "neutropenia",
        "severity": "critical",
        "grade": "3",
        "ward": "oncology-4b",
        "dedup_key": episode_ref(new.dedup_key),
        "patient_ref": patient_ref(patient),
    }
    # the alert's own dedup_key (an unkeyed hash of the patient id) never reaches Alertmanager
    assert new.dedup_key not in json.dumps(alert)
    assert alert["status"]["state"] == "active"
    assert [r["name"] for r in alert["receivers"]] == ["pager"]
    assert alert["annotations"]["patient_id"] == patient
    assert alert["annotations"]["summary"] == new.summary
    assert all(patient not in value for value in alert["labels"].values())

    (resolved,) = patients.alerts(cbc("b3", 48, patient_id=patient, neutrophils=3.5))
    assert resolved.event == "resolved"
    send(broker, alert_topic, [resolved])
    wait_for("the episode to resolve", lambda: not firing())
    assert bridge.running(), bridge.log_tail()
    metrics = bridge_metrics(bridge)
    assert metrics[("monitor_bridge_open_episodes", None)] == 0
    assert metrics[consumed] == 2
    assert metrics[("monitor_bridge_posts_total", "ok")] >= 2


def test_pancytopenia_inhibits_its_components_for_the_same_patient_only(
    broker: EmbeddedBroker,
    alert_topic: str,
    alertmanager: Alertmanager,
    bridges: Callable[[], Child],
) -> None:
    patients = Patients()
    sick, other = "MRN-BRIDGE-PANCY", "MRN-BRIDGE-OTHER"
    alerts = patients.alerts(
        cbc("p1", 0, patient_id=sick, hemoglobin=7.5, wbc=1.5, neutrophils=0.7, platelets=40),
        cbc("o1", 0, patient_id=other, neutrophils=0.7),
    )
    pancytopenia = by(alerts, "pancytopenia")
    assert {a.condition for a in alerts if a.patient_id == sick} >= {
        "pancytopenia",
        "neutropenia",
        "leukopenia",
    }
    bridges()
    send(broker, alert_topic, alerts)
    keys = {episode_ref(a.dedup_key) for a in alerts}

    def all_in_with_inhibition() -> dict[tuple[str, str], dict[str, Any]] | None:
        found = {
            (a["annotations"]["patient_id"], a["labels"]["condition"]): a
            for a in alertmanager.alerts()
            if a["labels"].get("dedup_key") in keys
        }
        if len(found) < len(alerts) or not found[(sick, "neutropenia")]["status"]["inhibitedBy"]:
            return None
        return found

    found = wait_for("every alert, the neutropenia inhibited", all_in_with_inhibition)
    source = found[(sick, "pancytopenia")]
    assert source["status"]["state"] == "active"
    assert source["status"]["inhibitedBy"] == []
    for condition in ("neutropenia", "leukopenia"):
        target = found[(sick, condition)]
        assert target["status"]["state"] == "suppressed"
        assert source["fingerprint"] in target["status"]["inhibitedBy"]
    assert episode_ref(pancytopenia.dedup_key) == source["labels"]["dedup_key"]
    # inhibition is per patient (equal: [patient_ref]): another patient's neutropenia still pages
    assert found[(other, "neutropenia")]["status"] == {
        "state": "active",
        "inhibitedBy": [],
        "silencedBy": [],
    }


def test_a_restarted_bridge_neither_loses_nor_duplicates_open_alerts(
    broker: EmbeddedBroker,
    alert_topic: str,
    alertmanager: Alertmanager,
    bridges: Callable[[], Child],
) -> None:
    patients = Patients()
    first, second = "MRN-BRIDGE-RESTART-1", "MRN-BRIDGE-RESTART-2"
    patients.alerts(cbc("r0", 0, patient_id=first, neutrophils=4.0, platelets=250))
    opened = patients.alerts(cbc("r1", 24, patient_id=first, neutrophils=1.2, platelets=140))
    neutropenia, thrombocytopenia = by(opened, "neutropenia"), by(opened, "thrombocytopenia")
    assert (neutropenia.grade, thrombocytopenia.grade) == (2, 1)
    bridge = bridges()
    send(broker, alert_topic, opened)
    keys = {neutropenia.dedup_key, thrombocytopenia.dedup_key}
    wait_for_episodes(alertmanager, keys, [("neutropenia", "2"), ("thrombocytopenia", "1")])

    assert bridge.stop() == 0, bridge.log_tail()
    # While the bridge is down: the neutropenia worsens (a new labelset), the
    # thrombocytopenia resolves, and another patient's anemia opens.
    changed = patients.alerts(cbc("r2", 48, patient_id=first, neutrophils=0.7, platelets=250))
    assert sorted((a.condition, a.event) for a in changed) == [
        ("neutropenia", "worsened"),
        ("thrombocytopenia", "resolved"),
    ]
    anemia = by(patients.alerts(cbc("s1", 48, patient_id=second, hemoglobin=9.0)), "anemia")
    for alert in [*changed, anemia]:  # a batch each: the rebuild reads to the end offset
        send(broker, alert_topic, [alert])
    # Alertmanager still holds what the stopped bridge posted (endsAt is minutes ahead).
    assert alertmanager.episodes(keys) == [("neutropenia", "2"), ("thrombocytopenia", "1")]

    restarted = bridges()
    keys.add(anemia.dedup_key)
    expected = [("anemia", "2"), ("neutropenia", "3")]
    wait_for_episodes(alertmanager, keys, expected)
    # It stays so once the restarted bridge has joined its group, which commits the alerts of
    # its down time at once: the rebuild applied them and the start-up sync posted them.
    wait_for(
        "the group to commit every alert",
        lambda: committed_total(broker, alert_topic, f"{alert_topic}.bridge") == 5,
    )
    assert alertmanager.episodes(keys) == expected
    assert restarted.running(), restarted.log_tail()
    # The rebuild saw all three (its start-up sync ended the retired labelsets itself).
    assert "synced: 2 open episodes" in restarted.log_tail()
    metrics = bridge_metrics(restarted)
    assert metrics[("monitor_bridge_synced", None)] == 1
    assert metrics[("monitor_bridge_open_episodes", None)] == len(expected)
    assert metrics[("monitor_bridge_posts_total", "ok")] >= 1  # the start-up sync
    # the group passes over what the start-up sync handled: nothing is read twice
    assert metrics[("monitor_bridge_alerts_consumed_total", None)] == 0
    assert metrics[("monitor_bridge_records_skipped_total", None)] == 0


def wait_for_episodes(
    manager: Alertmanager, keys: set[str], expected: list[tuple[str, str]]
) -> None:
    """Until Alertmanager holds exactly ``expected`` (condition, grade) for these episodes."""
    seen: list[list[tuple[str, str]]] = [[]]

    def exact() -> bool:
        seen[0] = manager.episodes(keys)
        return seen[0] == expected

    try:
        wait_for(f"exactly {expected}", exact)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; Alertmanager held {seen[0]}") from None


def committed_total(broker: EmbeddedBroker, topic: str, group: str) -> int:
    """The sum of the group's committed offsets over the topic's partitions."""

    async def total() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
        await consumer.start()
        try:
            offsets = [
                await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)
            ]
        finally:
            await consumer.stop()
        return sum(offset or 0 for offset in offsets)

    return asyncio.run(total())


@pytest.mark.asyncio
async def test_open_alerts_are_kept_alive_before_they_would_expire(
    broker: EmbeddedBroker, alert_topic: str, alertmanager: Alertmanager, unique_name: str
) -> None:
    patients = Patients()
    patients.alerts(cbc("k0", 0, patient_id="MRN-BRIDGE-KEEP", platelets=250))
    (alert,) = patients.alerts(cbc("k1", 24, patient_id="MRN-BRIDGE-KEEP", platelets=120))
    values = [(alert.patient_id.encode(), alert.model_dump_json().encode())]
    assert await publish(broker.bootstrap, alert_topic, values) == 1
    interval = 1.0
    output = AlertmanagerOutput(Pseudonymizer(PSEUDONYM_KEY.encode()), timedelta(seconds=interval))
    options = BridgeOptions(
        url=alertmanager.url + "/api/v2/alerts", group=f"{unique_name}.am", resend_interval=interval
    )
    bridge = Bridge(
        MonitorSettings(broker_url=broker.url, alerts_topic=alert_topic), output, options
    )
    task = asyncio.create_task(bridge.run())

    def ends_at() -> datetime | None:
        for posted in alertmanager.alerts():
            if posted["labels"].get("dedup_key") == episode_ref(alert.dedup_key):
                return datetime.fromisoformat(posted["endsAt"])
        return None

    try:
        await asyncio.wait_for(bridge.synced.wait(), timeout=WAIT_S)
        first = ends_at()  # the start-up sync posted it
        assert first is not None
        assert timedelta(seconds=2) < first - datetime.now(UTC) <= timedelta(seconds=4.5)
        await wait_until(
            "a keep-alive to push endsAt further", lambda: (ends_at() or first) > first
        )
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=WAIT_S)


# --------------------------------------------------------------------------------------------
# PagerDuty Events v2


@dataclass
class EventsReceiver:
    """A local endpoint shaped like PagerDuty's ``/v2/enqueue``."""

    events: list[dict[str, Any]] = field(default_factory=list)

    async def enqueue(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.json_response({"status": "success", "message": "Event processed"}, status=202)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[tuple[EventsReceiver, str]]:
    events = EventsReceiver()
    app = web.Application()
    app.router.add_post("/v2/enqueue", events.enqueue)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield events, f"http://127.0.0.1:{runner.addresses[0][1]}/v2/enqueue"
    finally:
        await runner.cleanup()


async def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT_S:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_pagerduty_output_triggers_then_resolves_with_one_dedup_key(
    broker: EmbeddedBroker, unique_name: str, receiver: tuple[EventsReceiver, str]
) -> None:
    events, url = receiver
    topic = f"{unique_name}.alerts"
    await create_topics(broker.bootstrap, {topic: PARTITIONS})
    settings = MonitorSettings(broker_url=broker.url, alerts_topic=topic)
    patients = Patients()
    patient = "MRN-BRIDGE-PD-1"
    patients.alerts(cbc("d0", 0, patient_id=patient, neutrophils=4.0))
    (mild,) = patients.alerts(cbc("d1", 24, patient_id=patient, neutrophils=1.6))
    (severe,) = patients.alerts(cbc("d2", 48, patient_id=patient, neutrophils=0.4))
    (resolved,) = patients.alerts(cbc("d3", 72, patient_id=patient, neutrophils=3.0))
    assert [(a.event, a.page) for a in (mild, severe, resolved)] == [
        ("new", False),
        ("worsened", True),
        ("resolved", False),
    ]
    routing_key = "pd-routing-key-0123456789abcdef"
    output = PagerDutyOutput(routing_key, Pseudonymizer(PSEUDONYM_KEY.encode()))
    bridge = Bridge(
        settings,
        output,
        BridgeOptions(url=url, group=f"{unique_name}.pd", resend_interval=60),
    )
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(bridge.synced.wait(), timeout=WAIT_S)

        async def publish_alerts(alerts: Sequence[Alert]) -> None:
            values = [(a.patient_id.encode(), a.model_dump_json().encode()) for a in alerts]
            assert await publish(broker.bootstrap, topic, values) == len(values)

        await publish_alerts([mild, severe])
        await wait_until("a trigger", lambda: len(events.events) >= 1)
        await publish_alerts([resolved])
        await wait_until("a resolve", lambda: len(events.events) >= 2)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=WAIT_S)

    trigger, resolve = events.events
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == episode_ref(severe.dedup_key)
    assert severe.dedup_key not in json.dumps(events.events)
    assert severe.result_id not in json.dumps(events.events)
    assert trigger["routing_key"] == routing_key
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == severe.summary
    assert trigger["payload"]["custom_details"]["patient_ref"] == patient_ref(patient)
    assert patient not in json.dumps(events.events)


async def send_to(broker: EmbeddedBroker, topic: str, partition: int, alert: Alert) -> None:
    """Publish to a chosen partition (the tests below need alerts on partitions of their own)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await producer.start()
    try:
        value, key = alert.model_dump_json().encode(), alert.patient_id.encode()
        await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def group_commits(broker: EmbeddedBroker, topic: str, group: str) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group)
    await consumer.start()
    try:
        return [await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)]
    finally:
        await consumer.stop()


async def commit_as_group(broker: EmbeddedBroker, topic: str, group: str, offsets: int) -> None:
    """Commit ``offsets`` on partition 0 only, as a member of ``group`` (what a bridge before
    the start-up commits left behind when it never read a record of the other partitions)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while len(consumer.assignment()) < PARTITIONS:
            assert time.monotonic() < deadline, "the group never assigned the partitions"
            await consumer.getmany(timeout_ms=200)
        await consumer.commit({TopicPartition(topic, 0): offsets})
    finally:
        await consumer.stop()


async def run_pd_bridge(
    broker: EmbeddedBroker, topic: str, group: str, url: str
) -> tuple[Bridge, asyncio.Task[None]]:
    settings = MonitorSettings(broker_url=broker.url, alerts_topic=topic)
    output = PagerDutyOutput(
        "pd-routing-key-0123456789abcdef", Pseudonymizer(PSEUDONYM_KEY.encode())
    )
    bridge = Bridge(settings, output, BridgeOptions(url=url, group=group, resend_interval=60))
    task = asyncio.create_task(bridge.run())
    await asyncio.wait_for(bridge.synced.wait(), timeout=WAIT_S)
    return bridge, task


def paging_alert(patient: str) -> Alert:
    patients = Patients()
    patients.alerts(cbc("g0", 0, patient_id=patient, neutrophils=4.0))
    (alert,) = patients.alerts(cbc("g1", 24, patient_id=patient, neutrophils=0.4))
    assert alert.page
    return alert


@pytest.mark.asyncio
async def test_a_new_pagerduty_group_pages_what_is_open_and_commits_every_partition(
    broker: EmbeddedBroker, unique_name: str, receiver: tuple[EventsReceiver, str]
) -> None:
    """A first deployment (or expired offsets): the page published before the group existed is
    sent at start, exactly once, and every partition, empty ones included, gets a commit."""
    events, url = receiver
    topic, group = f"{unique_name}.alerts", f"{unique_name}.pd"
    await create_topics(broker.bootstrap, {topic: PARTITIONS})
    alert = paging_alert("MRN-BRIDGE-PD-NEW")
    await send_to(broker, topic, 2, alert)
    bridge, task = await run_pd_bridge(broker, topic, group, url)
    try:
        await wait_until("the open page to be triggered", lambda: len(events.events) >= 1)
        commits: list[int | None] = []

        async def all_committed() -> bool:
            commits[:] = await group_commits(broker, topic, group)
            return commits == [0, 0, 1, 0]

        deadline = time.monotonic() + WAIT_S
        while not await all_committed():
            assert time.monotonic() < deadline, f"commits: {commits}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the group passes over the page the start-up sync sent
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=WAIT_S)
    (trigger,) = events.events
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == episode_ref(alert.dedup_key)


@pytest.mark.asyncio
async def test_a_page_on_a_partition_the_group_never_committed_is_not_lost(
    broker: EmbeddedBroker, unique_name: str, receiver: tuple[EventsReceiver, str]
) -> None:
    """The group has a commit on partition 0 only; a page arrives on partition 1 while the
    bridge is down. The rebuild used to apply it without collecting it (no commit there), and
    the group then took it for a repeat: the trigger was never sent."""
    events, url = receiver
    topic, group = f"{unique_name}.alerts", f"{unique_name}.pd"
    await create_topics(broker.bootstrap, {topic: PARTITIONS})
    quiet = Patients().alerts(cbc("q1", 0, patient_id="MRN-BRIDGE-PD-QUIET", platelets=120))
    await send_to(broker, topic, 0, by(quiet, "thrombocytopenia"))
    await commit_as_group(broker, topic, group, 1)
    page = paging_alert("MRN-BRIDGE-PD-LATE")
    await send_to(broker, topic, 1, page)
    bridge, task = await run_pd_bridge(broker, topic, group, url)
    try:
        await wait_until("the page from partition 1", lambda: len(events.events) >= 1)
        await asyncio.sleep(1.0)  # and no second trigger from the group consumer
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=WAIT_S)
    (trigger,) = events.events
    assert (trigger["event_action"], trigger["dedup_key"]) == (
        "trigger",
        episode_ref(page.dedup_key),
    )
    assert await group_commits(broker, topic, group) == [1, 1, 0, 0]
