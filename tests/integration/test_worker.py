"""Real ``cbc-monitor worker`` processes against the embedded broker, over the Kafka protocol.

Nothing is mocked: results are produced with aiokafka to the results topic, the workers are child
processes configured by ``MONITOR_*`` variables (``monitor.local.WorkerProcess``), and alerts and
dead letters are read back with aiokafka from their topics. Expected alerts come from the pure
detector (``monitor.stream.replay.replay_values``): alert ids are deterministic, so the service must
publish exactly the ids the replay computes.

Waiting is by polling with a deadline, never by a fixed sleep used as an assertion. To know that a
worker has finished a patient's stream, each scenario ends with a result whose alert is known: a
patient's alerts share one partition of the alert topic, in processing order, so once that last
alert is read, every alert of the earlier results has been read too. A cohort is followed by one
sentinel patient per input partition, for the same reason.

Most tests share one pair of workers (module scope; distinct patient ids per test). The SIGKILL and
restart scenarios start their own workers, topics and consumer group, and run first so that their
workers never overlap the shared pair on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata
from prometheus_client.parser import text_string_to_metric_families

from monitor.clinical.alert import Alert
from monitor.kafka.clients import header
from monitor.local.broker import EmbeddedBroker
from monitor.local.processes import WorkerProcess
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.messages import SimMessage
from monitor.stream.replay import replay_values
from tests.builders import cbc
from tests.integration.isolation import isolated_env

pytestmark = pytest.mark.integration

PARTITIONS = 4
ALERT_WAIT_S = 60.0  # how long alerts may take to arrive once their results are published
API_TOKEN = "integration-test-token-7f3a"

# Every patient id this module sends; /metrics must not carry any of them in a label.
USED_PATIENT_IDS: set[str] = set()


# --------------------------------------------------------------------------------------------
# Workers


@dataclass
class Deployment:
    """One monitor deployment: its own topics and consumer group, and its worker processes."""

    broker: EmbeddedBroker
    name: str
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def results_topic(self) -> str:
        return f"{self.name}.results"

    @property
    def by_patient_topic(self) -> str:
        return f"{self.results_topic}.by-patient"

    @property
    def alerts_topic(self) -> str:
        return f"{self.name}.alerts"

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    def env(self) -> dict[str, str]:
        return {
            **isolated_env(self.name),
            "MONITOR_RESULTS_TOPIC": self.results_topic,
            "MONITOR_ALERTS_TOPIC": self.alerts_topic,
            "MONITOR_DLQ_TOPIC": self.dlq_topic,
            "MONITOR_PARTITIONS": str(PARTITIONS),
            **self.extra_env,
        }

    def start_worker(self, label: str, data_dir: Path | None = None) -> WorkerProcess:
        worker = WorkerProcess(
            label,
            self.broker.url,
            data_dir or self.root / label,
            env=self.env(),
            log_dir=self.root / "logs",
        )
        self.workers.append(worker)
        return worker.start()

    def stop_all(self) -> None:
        """Stop every worker (SIGTERM, SIGKILL after 30 s), all at once; never leaves orphans."""
        with concurrent.futures.ThreadPoolExecutor(max(1, len(self.workers))) as pool:
            list(pool.map(lambda w: w.stop(), self.workers))
        for worker in self.workers:
            worker.kill()  # no-op unless stop() left it running


def wait_all_ready(workers: Sequence[WorkerProcess], timeout: float = 150.0) -> None:
    """Until every worker answers /readyz 200 in the same pass (no rebalance under way)."""
    deadline = time.monotonic() + timeout
    for worker in workers:
        worker.wait_ready(max(1.0, deadline - time.monotonic()))
    while not all(w.get("/readyz")[0] == 200 for w in workers):
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise AssertionError(f"{worker.name} exited; see {worker.log_path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"workers not ready together; logs in {workers[0].log_path}")
        time.sleep(0.25)


def deployment_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def shared(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """Two workers sharing the partitions of one set of topics, for the tests that can share."""
    deployment = Deployment(
        broker, deployment_name("worker-shared"), tmp_path_factory.mktemp("shared")
    )
    try:
        deployment.start_worker("worker-1")
        deployment.start_worker("worker-2")
        wait_all_ready(deployment.workers)
        yield deployment
    finally:
        deployment.stop_all()


@pytest.fixture
def own(broker: EmbeddedBroker, unique_name: str, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of the test's own (workers started by the test), always stopped afterwards."""
    deployment = Deployment(broker, unique_name, tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()


# --------------------------------------------------------------------------------------------
# Producing and reading


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes
    partition: int | None = None  # None: aiokafka's partitioner decides (murmur2 of the key)


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[Message],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> list[RecordMetadata]:
    """Send in order (at most ``rate`` per second), wait for every ack, return their metadata."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        started = time.monotonic()
        for sent, message in enumerate(messages):
            if rate:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(
                await producer.send(
                    topic, message.value, key=message.key, partition=message.partition
                )
            )
            if on_sent is not None:
                on_sent(sent + 1)
        return list(await asyncio.gather(*futures))
    finally:
        await producer.stop()


class TopicReader:
    """Every record of some topics from the beginning, accumulated as they arrive."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self.consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    def of(self, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
        return [r for r in self.records if r.topic == topic]

    async def poll_until(
        self,
        done: Callable[[], bool],
        within: float = ALERT_WAIT_S,
    ) -> bool:
        """Read until ``done()`` or the deadline; the caller asserts and shows the difference."""
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                return False
            batch = await self.consumer.getmany(timeout_ms=300)
            for records in batch.values():
                self.records.extend(records)
        return True


def alerts_of(records: Iterable[ConsumerRecord[bytes, bytes]]) -> list[Alert]:
    return [Alert.model_validate_json(r.value) for r in records if r.value is not None]


def content(alert: Alert) -> dict[str, Any]:
    """What must be identical between two publications of one alert (not when it was made)."""
    return alert.model_dump(mode="json", exclude={"emitted_at"})


def distinct(alerts: Iterable[Alert]) -> list[Alert]:
    """First occurrence of each alert id, in order; a repeat must be an exact copy."""
    first: dict[str, Alert] = {}
    for alert in alerts:
        seen = first.setdefault(alert.alert_id, alert)
        assert content(alert) == content(seen), f"alert {alert.alert_id} repeated with changes"
    return list(first.values())


def triples(alerts: Iterable[Alert]) -> list[tuple[str, str, int]]:
    return [(a.condition, a.event, a.grade) for a in alerts]


def expected_alerts(values: Iterable[bytes]) -> list[Alert]:
    return replay_values(list(values)).alerts


def raw(result_id: str, hours: float, patient_id: str, **values: float) -> bytes:
    USED_PATIENT_IDS.add(patient_id)
    return cbc(result_id, hours, patient_id=patient_id, **values).model_dump_json().encode()


def patient_id(tag: str) -> str:
    pid = f"PT-{tag}-{uuid.uuid4().hex[:6]}"
    USED_PATIENT_IDS.add(pid)
    return pid


def sentinels(tag: str) -> list[Message]:
    """One result per input partition, keyed by its own patient, whose alert is certain."""
    out = []
    for partition in range(PARTITIONS):
        pid = patient_id(f"{tag}-sentinel-{partition}")
        # Collected on 2026-11-21, after every cohort result and before the day the suite runs
        # (a result collected in the future is dead-lettered, not graded).
        value = raw(f"{pid}-r1", 24 * 20, pid, neutrophils=0.3)
        out.append(Message(pid.encode(), value, partition))
    return out


def alert_ids(values: Iterable[bytes]) -> set[str]:
    return {a.alert_id for a in expected_alerts(values)}


# --------------------------------------------------------------------------------------------
# Metrics and HTTP


def metric_samples(worker: WorkerProcess) -> list[Any]:
    status, body = worker.get("/metrics")
    assert status == 200, f"/metrics answered {status}"
    return [s for f in text_string_to_metric_families(body) for s in f.samples]


def metric(worker: WorkerProcess | Sequence[WorkerProcess], name: str, **labels: str) -> float:
    """The sum of ``name`` samples matching ``labels`` (over several workers if given)."""
    workers = [worker] if isinstance(worker, WorkerProcess) else list(worker)
    return sum(
        s.value
        for w in workers
        for s in metric_samples(w)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def raw_metrics(worker: WorkerProcess) -> tuple[int, str, str]:
    """Status, Content-Type and body of /metrics, as a Prometheus server reads it."""
    with urllib.request.urlopen(worker.url + "/metrics", timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------------------------
# A worker killed with SIGKILL mid-stream (own workers; runs before the shared pair starts)


def cohort(seed: int) -> list[SimMessage]:
    # Canonical JSON only: these tests are about the results path (test_feeds covers the rest).
    spec = CohortSpec(
        seed=seed, patients=30, days=30, hl7v2_share=0.0, fhir_share=0.0, context=False
    )
    messages = simulate_cohort(spec)
    USED_PATIENT_IDS.update(m.key.decode() for m in messages if m.key is not None)
    return messages


@pytest.mark.timeout(240)
@pytest.mark.asyncio
async def test_worker_killed_mid_stream_loses_no_alert(own: Deployment) -> None:
    messages = cohort(seed=11)
    by_id = {a.alert_id: a for a in expected_alerts(m.value for m in messages)}
    tail = sentinels("kill")
    expected = set(by_id) | alert_ids(m.value for m in tail)
    victim = own.start_worker("worker-1")
    survivor = own.start_worker("worker-2")
    await asyncio.to_thread(wait_all_ready, own.workers)
    bootstrap = own.broker.bootstrap

    async with TopicReader(bootstrap, own.alerts_topic) as reader:
        sent = [0]
        kill_point = asyncio.Event()

        def count(n: int) -> None:
            sent[0] = n
            if n >= len(messages) * 0.35:
                kill_point.set()

        publishing = asyncio.create_task(
            produce(
                bootstrap,
                own.results_topic,
                (Message(m.key, m.value) for m in messages),
                rate=40.0,
                on_sent=count,
            )
        )
        await asyncio.wait_for(kill_point.wait(), 60)
        consumed_before = await asyncio.to_thread(
            lambda: eventually(lambda: metric(victim, "monitor_results_consumed_total") > 0, 20)
        )
        assert consumed_before, "worker-1 never consumed anything before the kill"
        assert not publishing.done(), "the cohort was fully published before the kill"
        victim.kill()
        killed_at = sent[0]
        await publishing
        await produce(bootstrap, own.results_topic, tail)

        reached = await reader.poll_until(
            lambda: expected <= {a.alert_id for a in alerts_of(reader.records)}, within=150
        )
        received = alerts_of(reader.records)

    seen = {a.alert_id for a in received}
    assert reached, (
        f"{len(expected - seen)} expected alerts missing after worker-1 was killed at message "
        f"{killed_at}/{len(messages)}; logs in {survivor.log_path.parent}"
    )
    assert seen == expected, f"unexpected alert ids: {sorted(seen - expected)}"
    sentinel_ids = {m.key.decode() for m in tail if m.key is not None}
    for alert in received:  # a repeat must be an exact copy of an expected alert
        if alert.patient_id not in sentinel_ids:
            assert content(alert) == content(by_id[alert.alert_id])
    distinct(received)
    assert metric(survivor, "monitor_results_consumed_total") > 0


# --------------------------------------------------------------------------------------------
# A worker asked to stop (SIGTERM, as an orchestrator asks) stops within seconds


@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_a_worker_stops_on_sigterm_within_seconds(own: Deployment, tmp_path: Path) -> None:
    """A graceful stop finishes by itself, well before an orchestrator's kill (a store created
    before the app started once kept the table from stopping: 30 s, then SIGKILL)."""
    worker = own.start_worker("stopping", tmp_path / "data")
    await asyncio.to_thread(wait_all_ready, [worker])
    pid = patient_id("stop")
    await produce(
        own.broker.bootstrap,
        own.results_topic,
        [Message(pid.encode(), raw(f"s{i}", i, pid, neutrophils=0.4)) for i in range(20)],
    )
    assert await asyncio.to_thread(
        eventually, lambda: metric(worker, "monitor_results_consumed_total") >= 20
    )
    started = time.monotonic()
    status = await asyncio.to_thread(worker.stop, 15.0)
    assert time.monotonic() - started < 15.0, worker.log_tail()
    assert status == 0


# --------------------------------------------------------------------------------------------
# A worker restarted on a fresh data dir recovers its table from the changelog


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "max_poll_records",
    # One record a poll: the end-offset correction then reads a last batch in parts (a
    # review found 11 of 40 states lost on recovery before it read on to the batch's end).
    [None, "1"],
    ids=["default-poll", "one-record-a-poll"],
)
@pytest.mark.asyncio
async def test_restart_with_fresh_data_dir_recovers_history_from_changelog(
    own: Deployment, tmp_path: Path, max_poll_records: str | None
) -> None:
    own.extra_env["MONITOR_API_TOKEN"] = API_TOKEN
    if max_poll_records is not None:
        own.extra_env["MONITOR_BROKER_MAX_POLL_RECORDS"] = max_poll_records
    pid = patient_id("restart")
    first = [
        raw("r1", 0, pid, neutrophils=1.6),  # grade 1 (below the LLN of 1.8): new
        raw("r2", 24, pid, neutrophils=1.7),  # still grade 1: nothing
    ]
    fall = raw("r3", 48, pid, neutrophils=0.8)  # grade 3
    # Patients with normal counts beside it, in the same batches: the changelog then holds
    # multi-record batches, whose end the embedded broker misreports (monitor.kafka.end_offsets).
    others = [
        Message(p.encode(), raw(f"o{i}", 0, p, neutrophils=3.0))
        for i, p in enumerate(patient_id(f"restart-other{i}") for i in range(60))
    ]
    expected = expected_alerts([*first, fall])
    assert triples(expected) == [("neutropenia", "new", 1), ("neutropenia", "worsened", 3)]
    bootstrap = own.broker.bootstrap
    patient_path = f"/patients/{pid}"

    worker = own.start_worker("worker-a", tmp_path / "data-a")
    await asyncio.to_thread(wait_all_ready, [worker])
    async with TopicReader(bootstrap, own.alerts_topic) as reader:
        await produce(
            bootstrap,
            own.results_topic,
            [*others[:30], *(Message(pid.encode(), v) for v in first), *others[30:]],
        )
        assert await reader.poll_until(lambda: len(reader.records) >= 1)
        tracked = len(others) + 1
        assert await asyncio.to_thread(
            eventually, lambda: metric(worker, "monitor_patients_tracked") == tracked
        )

        def history_has(worker: WorkerProcess, count: int) -> bool:
            status, body = worker.get(patient_path, bearer(API_TOKEN))
            return status == 200 and len(body["history"]) == count

        assert await asyncio.to_thread(eventually, lambda: history_has(worker, 2))
        assert worker.get(patient_path)[0] == 401
        # Faust's own table browser would serve the same state with no token: it is off.
        assert worker.get(f"/table/patients/{pid}/")[0] == 404
        assert worker.get("/table/")[0] == 404
        assert worker.get(patient_path, bearer("not-the-token"))[0] == 401
        assert worker.get(patient_path, {"Authorization": API_TOKEN})[0] == 401

        await asyncio.to_thread(worker.stop)
        fresh = tmp_path / "data-b"
        assert not fresh.exists()
        restarted = own.start_worker("worker-b", fresh)
        await asyncio.to_thread(wait_all_ready, [restarted])

        # Before any new input: the history can only have come from the changelog topic.
        assert await asyncio.to_thread(eventually, lambda: history_has(restarted, 2), 30.0), (
            f"history not recovered: {restarted.get(patient_path, bearer(API_TOKEN))}"
        )
        # Every patient's state, to the last changelog record of each partition.
        assert await asyncio.to_thread(
            eventually, lambda: metric(restarted, "monitor_patients_tracked") == tracked
        )
        await produce(bootstrap, own.results_topic, [Message(pid.encode(), fall)])
        assert await reader.poll_until(lambda: len(distinct(alerts_of(reader.records))) >= 2)
        received = distinct(alerts_of(reader.records))
        # A patient's alerts keep their order on one partition: a "new" sent again by a worker
        # that lost the state would have been read before the "worsened".
        published = len(reader.records)

    assert published == 2, "the restarted worker published an alert again"
    assert triples(received) == triples(expected)
    # The state that records an alert is stored after the alert is acknowledged, so it can
    # reach the table a moment after the alert reaches the topic.
    assert await asyncio.to_thread(eventually, lambda: history_has(restarted, 3)), (
        f"r3 not stored: {restarted.get(patient_path, bearer(API_TOKEN))}"
    )
    new, worsened = received
    assert (worsened.event, worsened.grade, worsened.previous_grade) == ("worsened", 3, 1)
    assert worsened.dedup_key == new.dedup_key, "the restart opened a second episode"
    assert [a.alert_id for a in received] == [a.alert_id for a in expected]
    assert [content(a) for a in received] == [content(a) for a in expected]

    status, body = restarted.get(patient_path, bearer(API_TOKEN))
    assert status == 200
    assert body["patient_id"] == pid
    assert [e["result_id"] for e in body["history"]] == ["r1", "r2", "r3"]
    assert body["grades"]["neutropenia"] == 3
    assert body["open_episodes"]["neutropenia"]["grade"] == 3
    assert restarted.get(patient_path)[0] == 401


# --------------------------------------------------------------------------------------------
# Tests on the shared pair of workers


def _neutropenia_cycle(pid: str) -> list[bytes]:
    return [
        raw("a1", 0, pid, neutrophils=2.5),
        raw("a2", 24, pid, neutrophils=1.6),
        raw("a3", 48, pid, neutrophils=0.8),
        raw("a4", 72, pid, neutrophils=1.2),
        raw("a5", 96, pid, neutrophils=2.4),
    ]


def _stable_grade_4(pid: str) -> list[bytes]:
    daily = [raw(f"s{day}", 24 * day, pid, neutrophils=0.3) for day in range(5)]
    return [*daily, raw("s9", 24 * 5, pid, neutrophils=2.2)]


def _pancytopenia(pid: str) -> list[bytes]:
    return [
        raw("p1", 0, pid, hemoglobin=13.1, wbc=6.2, neutrophils=3.6, platelets=240),
        raw("p2", 48, pid, hemoglobin=9.4, wbc=2.6, neutrophils=0.9, platelets=62),
        raw("p3", 72, pid, hemoglobin=9.3, wbc=2.5, neutrophils=0.9, platelets=40),
        raw("p4", 144, pid, hemoglobin=12.8, wbc=5.5, neutrophils=3.1, platelets=210),
    ]


SCENARIOS: dict[str, tuple[Callable[[str], list[bytes]], list[tuple[str, str, int]]]] = {
    "cycle": (
        _neutropenia_cycle,
        [
            ("neutropenia", "new", 1),
            ("neutropenia", "worsened", 3),
            ("neutropenia", "improved", 2),
            ("neutropenia", "resolved", 0),
        ],
    ),
    "stable": (
        _stable_grade_4,
        [("neutropenia", "new", 4), ("neutropenia", "resolved", 0)],
    ),
    "pancy": (
        _pancytopenia,
        [
            ("anemia", "new", 2),
            ("leukopenia", "new", 2),
            ("neutropenia", "new", 3),
            ("thrombocytopenia", "new", 2),
            ("pancytopenia", "new", 2),
            ("thrombocytopenia", "worsened", 3),
            ("pancytopenia", "worsened", 3),
            ("anemia", "resolved", 0),
            ("leukopenia", "resolved", 0),
            ("neutropenia", "resolved", 0),
            ("thrombocytopenia", "resolved", 0),
            ("pancytopenia", "resolved", 0),
        ],
    ),
}


def _by_patient(alerts: Iterable[Alert]) -> dict[str, list[Alert]]:
    grouped: dict[str, list[Alert]] = {}
    for alert in alerts:
        grouped.setdefault(alert.patient_id, []).append(alert)
    return grouped


def _complete(reader: TopicReader, last_ids: dict[str, str]) -> Callable[[], bool]:
    """True once each patient's last expected alert has been read."""

    def done() -> bool:
        seen = {(a.patient_id, a.alert_id) for a in alerts_of(reader.records)}
        return all((pid, last) in seen for pid, last in last_ids.items())

    return done


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_scripted_patients_get_exactly_their_alerts_in_order(shared: Deployment) -> None:
    streams = {patient_id(name): (build, events) for name, (build, events) in SCENARIOS.items()}
    values = {pid: build(pid) for pid, (build, _) in streams.items()}
    expected = {pid: expected_alerts(v) for pid, v in values.items()}
    for pid, (_, events) in streams.items():
        assert triples(expected[pid]) == events, "the scenario no longer means what it says"

    bootstrap = shared.broker.bootstrap
    async with TopicReader(bootstrap, shared.alerts_topic) as reader:
        # Interleave the patients, as a lab feed would.
        longest = max(len(v) for v in values.values())
        interleaved = [
            Message(pid.encode(), v[i])
            for i in range(longest)
            for pid, v in values.items()
            if i < len(v)
        ]
        await produce(bootstrap, shared.results_topic, interleaved)
        await reader.poll_until(
            _complete(reader, {pid: a[-1].alert_id for pid, a in expected.items()})
        )
        records = [r for r in reader.records if r.key is not None and r.key.decode() in values]

    received = _by_patient(distinct(alerts_of(records)))
    for pid, (_, events) in streams.items():
        got = received.get(pid, [])
        assert triples(got) == events, f"patient {pid}"
        assert [a.alert_id for a in got] == [a.alert_id for a in expected[pid]]
        assert [content(a) for a in got] == [content(a) for a in expected[pid]]
    stable = received[next(p for p in streams if streams[p][0] is _stable_grade_4)]
    assert [a.page for a in stable] == [True, False], "a stable grade 4 must page exactly once"

    for record in records:
        alert = Alert.model_validate_json(record.value)
        assert record.key == alert.patient_id.encode()
        names = {name for name, _ in record.headers}
        assert {
            "monitor.source_topic",
            "monitor.source_partition",
            "monitor.source_offset",
            "monitor.source_timestamp",
        } <= names
        assert header(record, "monitor.source_topic") == shared.results_topic.encode()
        for name, value in record.headers:
            if name.startswith("monitor.source_"):
                assert alert.patient_id.encode() not in bytes(value)
        assert all(pid.encode() not in bytes(v) for pid in values for _, v in record.headers)


def _malformed(pid: str) -> dict[str, tuple[bytes, str, str]]:
    """Broken messages of one patient: name -> (bytes, dlq.code, dlq.error_class)."""
    good = json.loads(raw("m0", 0, pid, neutrophils=0.3))

    def variant(result_id: str, change: Callable[[dict[str, Any]], None]) -> bytes:
        obj = json.loads(json.dumps(good))
        obj["result_id"] = result_id
        change(obj)
        return json.dumps(obj).encode()

    def unit(obj: dict[str, Any]) -> None:
        obj["components"]["neutrophils"]["unit"] = "bananas/L"

    def negative(obj: dict[str, Any]) -> None:
        obj["components"]["neutrophils"]["value"] = -0.4

    def naive(obj: dict[str, Any]) -> None:
        obj["collected_at"] = "2026-11-01T08:00:00"

    def oversize(obj: dict[str, Any]) -> None:
        obj["context"]["note"] = "x" * (64 * 1024)

    missing = {k: v for k, v in good.items() if k != "result_id"}
    return {
        "not_json": (
            b'{"result_id": "m1", "patient_id": "' + pid.encode() + b'", "compo',
            "not_json",
            "ValidationError",
        ),
        "missing_result_id": (json.dumps(missing).encode(), "missing_id", "ValidationError"),
        # Issue 9: a component that cannot be used is a rejected row, not a rejected message.
        "unknown_unit": (variant("m3", unit), "rows_rejected", "RowsRejected"),
        # A negative count is an impossible value: its row is rejected as implausible.
        "negative_count": (variant("m4", negative), "implausible", "RowsRejected"),
        "naive_timestamp": (variant("m5", naive), "schema", "ValidationError"),
        "oversize": (variant("m6", oversize), "oversize", "Oversize"),
        "not_utf8": (
            variant("m7", lambda o: None).replace(b"oncology-4b", b"oncology-\xff\xfe"),
            "not_utf8",
            "UnicodeDecodeError",
        ),
    }


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_malformed_messages_go_to_the_dead_letter_topic(shared: Deployment) -> None:
    pid = patient_id("dlq")
    bad = _malformed(pid)
    assert len(bad["oversize"][0]) > 64 * 1024
    good = raw("m8", 24, pid, neutrophils=0.3)
    expected = expected_alerts([good])
    assert triples(expected) == [("neutropenia", "new", 4)]
    bootstrap = shared.broker.bootstrap

    async with TopicReader(bootstrap, shared.alerts_topic, shared.dlq_topic) as reader:
        sent = await produce(
            bootstrap,
            shared.results_topic,
            [
                *(Message(pid.encode(), value) for value, _, _ in bad.values()),
                Message(pid.encode(), good),
            ],
        )
        assert len({m.partition for m in sent}) == 1, "one key, one partition"
        partition = sent[0].partition
        offsets = {m.offset for m in sent[:-1]}

        def dead_letters() -> dict[int, ConsumerRecord[bytes, bytes]]:
            out = {}
            for record in reader.of(shared.dlq_topic):
                if header(record, "dlq.source_topic") == shared.results_topic.encode():
                    offset = int(header(record, "dlq.source_offset") or b"-1")
                    if offset in offsets:
                        out[offset] = record
            return out

        def done() -> bool:
            alerts = alerts_of(reader.of(shared.alerts_topic))
            return (
                expected[0].alert_id in {a.alert_id for a in alerts}
                and set(dead_letters()) == offsets
            )

        await reader.poll_until(done)
        letters = dead_letters()
        alerts = [a for a in alerts_of(reader.of(shared.alerts_topic)) if a.patient_id == pid]

    assert set(letters) == offsets, f"dead letters missing for offsets {offsets - set(letters)}"
    for (name, (value, code, error_class)), meta in zip(bad.items(), sent, strict=False):
        record = letters[meta.offset]
        assert record.value == value, f"{name}: the dead letter is not the original bytes"
        assert header(record, "dlq.code") == code.encode(), name
        assert header(record, "dlq.error_class") == error_class.encode(), name
        assert header(record, "dlq.reason"), name
        if code in ("rows_rejected", "implausible"):  # names the row and cause, never the value
            reason = header(record, "dlq.reason") or b""
            assert b"components.neutrophils" in reason, name
            assert b"bananas" not in reason, name
            assert b"0.4" not in reason, name
        assert header(record, "dlq.source_topic") == shared.results_topic.encode()
        assert header(record, "dlq.source_partition") == str(partition).encode()
        assert header(record, "dlq.source_offset") == str(meta.offset).encode()
        for header_name, header_value in record.headers:
            assert pid.encode() not in bytes(header_value), (
                f"{name}: {header_name} names the patient"
            )
    # The partition kept flowing: the good result after the bad ones was processed.
    assert [content(a) for a in distinct(alerts)] == [content(a) for a in expected]


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_redelivered_results_add_no_alert(shared: Deployment) -> None:
    pid = patient_id("redelivery")
    r1 = raw("d1", 0, pid, neutrophils=1.6)
    r2 = raw("d2", 24, pid, neutrophils=0.8)
    r3 = raw("d3", 48, pid, neutrophils=2.4)
    expected = expected_alerts([r1, r2, r3])
    assert triples(expected) == [
        ("neutropenia", "new", 1),
        ("neutropenia", "worsened", 3),
        ("neutropenia", "resolved", 0),
    ]
    copies = [r1, r2, r1, r2, r2]
    workers = shared.workers
    duplicates_before = metric(workers, "monitor_duplicates_ignored_total", kind="duplicate")
    bootstrap = shared.broker.bootstrap

    async with TopicReader(bootstrap, shared.alerts_topic) as reader:
        stream = [r1, r2, *copies, r3]
        await produce(bootstrap, shared.results_topic, (Message(pid.encode(), v) for v in stream))
        await reader.poll_until(_complete(reader, {pid: expected[-1].alert_id}))
        records = [r for r in reader.records if r.key == pid.encode()]

    received = alerts_of(records)
    assert triples(received) == triples(expected), "a redelivery changed the alerts"
    assert [a.alert_id for a in received] == [a.alert_id for a in expected]
    # The copies were all processed before d3, whose alert has been read.
    assert await asyncio.to_thread(
        eventually,
        lambda: (
            metric(workers, "monitor_duplicates_ignored_total", kind="duplicate")
            >= duplicates_before + len(copies)
        ),
    ), "monitor_duplicates_ignored_total{kind=duplicate} did not rise by the number of copies"


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_results_not_keyed_by_patient_are_repartitioned(shared: Deployment) -> None:
    unkeyed = patient_id("unkeyed")
    wrong_key = patient_id("wrongkey")
    values = {unkeyed: _neutropenia_cycle(unkeyed), wrong_key: _neutropenia_cycle(wrong_key)}
    expected = {pid: expected_alerts(v) for pid, v in values.items()}
    messages = [
        # No key: pinned to one partition, so the patient's results keep their order.
        *(Message(None, v, partition=0) for v in values[unkeyed]),
        # Keyed by something else than the patient (here the sending lab).
        *(Message(b"lab-feed-central", v) for v in values[wrong_key]),
    ]
    bootstrap = shared.broker.bootstrap

    async with TopicReader(bootstrap, shared.alerts_topic) as reader:
        await produce(bootstrap, shared.results_topic, messages)
        await reader.poll_until(
            _complete(reader, {pid: a[-1].alert_id for pid, a in expected.items()})
        )
        records = [r for r in reader.records if r.key is not None and r.key.decode() in values]

    received = _by_patient(distinct(alerts_of(records)))
    for pid in values:
        assert [a.alert_id for a in received.get(pid, [])] == [a.alert_id for a in expected[pid]], (
            f"patient {pid}"
        )
        assert triples(received[pid]) == SCENARIOS["cycle"][1]
    for record in records:
        assert record.key == Alert.model_validate_json(record.value).patient_id.encode()
        assert header(record, "monitor.source_topic") == shared.by_patient_topic.encode()


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_two_workers_share_a_cohort_and_publish_exactly_its_expected_alerts(
    shared: Deployment,
) -> None:
    messages = cohort(seed=7)
    by_id = {a.alert_id: a for a in expected_alerts(m.value for m in messages)}
    tail = sentinels("cohort")
    expected = set(by_id) | alert_ids(m.value for m in tail)
    cohort_patients = {m.key.decode() for m in messages if m.key is not None}
    tail_patients = {m.key.decode() for m in tail if m.key is not None}
    malformed = [i for i, m in enumerate(messages) if m.kind == "malformed"]
    assert malformed, "the cohort should carry malformed messages"
    workers = shared.workers
    consumed_before = [metric(w, "monitor_results_consumed_total") for w in workers]
    bootstrap = shared.broker.bootstrap

    async with TopicReader(bootstrap, shared.alerts_topic, shared.dlq_topic) as reader:
        sent = await produce(
            bootstrap, shared.results_topic, (Message(m.key, m.value) for m in messages)
        )
        await produce(bootstrap, shared.results_topic, tail)
        wanted_letters = {(sent[i].partition, sent[i].offset): messages[i].value for i in malformed}
        positions = {(s.partition, s.offset) for s in sent}

        def dead_letters() -> list[tuple[tuple[int, int], bytes | None]]:
            out = []
            for record in reader.of(shared.dlq_topic):
                if header(record, "dlq.source_topic") != shared.results_topic.encode():
                    continue
                where = (
                    int(header(record, "dlq.source_partition") or b"-1"),
                    int(header(record, "dlq.source_offset") or b"-1"),
                )
                if where in positions:
                    out.append((where, record.value))
            return out

        def done() -> bool:
            seen = {a.alert_id for a in alerts_of(reader.of(shared.alerts_topic))}
            return expected <= seen and {w for w, _ in dead_letters()} >= set(wanted_letters)

        await reader.poll_until(done, within=90)
        alerts = [
            a
            for a in alerts_of(reader.of(shared.alerts_topic))
            if a.patient_id in cohort_patients | tail_patients
        ]
        letters = dead_letters()

    seen = {a.alert_id for a in distinct(alerts)}
    assert seen == expected, f"missing {len(expected - seen)}, unexpected {sorted(seen - expected)}"
    for alert in alerts:
        if alert.patient_id in cohort_patients:
            assert content(alert) == content(by_id[alert.alert_id])
    # The simulator's episodes are what the service published.
    published = Counter((a.condition, a.event) for a in distinct(alerts) if a.alert_id in by_id)
    assert published == Counter((a.condition, a.event) for a in by_id.values())
    # Every malformed message, and nothing else, reached the dead-letter topic, as sent.
    assert dict(letters) == wanted_letters
    consumed = [metric(w, "monitor_results_consumed_total") for w in workers]
    deltas = [after - before for after, before in zip(consumed, consumed_before, strict=True)]
    assert all(d > 0 for d in deltas), f"the workers did not share the partitions: {deltas}"
    assert sum(deltas) >= len(messages) + len(tail)


@pytest.mark.timeout(120)
def test_patient_api_is_off_without_a_token(shared: Deployment) -> None:
    pid = patient_id("api-off")
    for worker in shared.workers:
        assert worker.get(f"/patients/{pid}")[0] == 404
        assert worker.get(f"/patients/{pid}", bearer(API_TOKEN))[0] == 404


@pytest.mark.timeout(180)
@pytest.mark.asyncio
async def test_health_readiness_and_metrics(shared: Deployment) -> None:
    pid = patient_id("metrics")
    values = [raw("x1", 0, pid, neutrophils=2.5), raw("x2", 24, pid, neutrophils=0.8)]
    expected = expected_alerts(values)
    assert triples(expected) == [("neutropenia", "new", 3)]
    bootstrap = shared.broker.bootstrap
    async with TopicReader(bootstrap, shared.alerts_topic) as reader:
        await produce(bootstrap, shared.results_topic, (Message(pid.encode(), v) for v in values))
        assert await reader.poll_until(_complete(reader, {pid: expected[0].alert_id}))

    workers = shared.workers
    for worker in workers:
        assert worker.get("/healthz")[0] == 200
        status, body = worker.get("/readyz")
        assert (status, body["ready"]) == (200, True)
        status, content_type, text = await asyncio.to_thread(raw_metrics, worker)
        assert status == 200
        assert content_type.startswith("text/plain")
        types = {f.name: f.type for f in text_string_to_metric_families(text)}
        assert {
            "monitor_results_consumed": "counter",
            "monitor_alerts": "counter",
            "monitor_result_to_alert_seconds": "histogram",
            "monitor_patients_tracked": "gauge",
            "monitor_active_episodes": "gauge",
        }.items() <= types.items()
        assert "monitor_build_info" in types or "monitor_build" in types
        names = {s.name for s in metric_samples(worker)}
        assert {
            "monitor_results_consumed_total",
            "monitor_result_to_alert_seconds_bucket",
            "monitor_result_to_alert_seconds_count",
            "monitor_result_to_alert_seconds_sum",
            "monitor_patients_tracked",
            "monitor_active_episodes",
            "monitor_build_info",
        } <= names

    def counted() -> bool:
        return (
            metric(
                workers, "monitor_alerts_total",
                condition="neutropenia", event="new", severity="critical",
            ) >= 1
            and metric(workers, "monitor_result_to_alert_seconds_count") >= 1
            and metric(workers, "monitor_patients_tracked") >= 1
            and metric(workers, "monitor_active_episodes", condition="neutropenia", grade="3")
            >= 1
        )  # fmt: skip

    assert await asyncio.to_thread(eventually, counted)
    assert metric(workers, "monitor_results_consumed_total") >= len(values)

    # Every input topic has a lag series; with everything processed and committed it drains.
    def lag_series(worker: WorkerProcess) -> set[str]:
        samples = metric_samples(worker)
        return {s.labels["topic"] for s in samples if s.name == "monitor_consumer_lag"}

    assert await asyncio.to_thread(
        eventually, lambda: all(shared.results_topic in lag_series(w) for w in workers)
    ), [lag_series(w) for w in workers]
    assert await asyncio.to_thread(eventually, lambda: metric(workers, "monitor_consumer_lag") == 0)
    build = [s for w in workers for s in metric_samples(w) if s.name == "monitor_build_info"]
    assert all(s.labels.get("version") for s in build)
    for worker in workers:
        for sample in metric_samples(worker):
            for label, value in sample.labels.items():
                assert value not in USED_PATIENT_IDS, f"{sample.name}{{{label}}} is a patient id"
                assert not any(p in value for p in USED_PATIENT_IDS), sample
