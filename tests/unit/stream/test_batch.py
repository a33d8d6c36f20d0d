"""A batch of input messages (``monitor.stream.batch``): planned against its own pending states,
alerts acknowledged before any state is stored, each patient stored once, the last summary per
patient, and a failure after planning storing nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.clinical.stored_state import load_state
from monitor.metrics import Metrics
from monitor.settings import MonitorSettings
from monitor.stream.batch import BatchHandler, Item, PendingStates, StateWrite, last_per_key
from monitor.stream.processor import Origin, ResultProcessor, Send
from tests.builders import cbc

SETTINGS = MonitorSettings()
NOW = datetime(2026, 12, 1, tzinfo=UTC)
T0 = NOW - timedelta(days=3)
BY_PATIENT = f"{SETTINGS.results_topic}.by-patient"
VITALS = f"{SETTINGS.vitals_topic}.by-patient"


def raw(result_id: str, hours: float, patient: str = "MRN-0042", **values: float) -> bytes:
    result = cbc(result_id, 0, patient_id=patient, **values)
    collected = T0 + timedelta(hours=hours)
    return result.model_copy(update={"collected_at": collected}).model_dump_json().encode()


def temperature(patient: str, at: datetime, celsius: float) -> bytes:
    return json.dumps({
        "observation_id": "T-1", "patient_id": patient, "measured_at": at.isoformat(),
        "temperature": celsius, "unit": "Cel",
    }).encode()  # fmt: skip


def item(value: bytes, patient: str = "MRN-0042", offset: int = 0, topic: str = BY_PATIENT,
         partition: int = 1) -> Item:  # fmt: skip
    return Item(value, patient.encode(), Origin(topic, partition, offset, NOW.timestamp()))


class Broker:
    """Records what was published and stored, in order; acknowledges a little later."""

    def __init__(self, table: dict[bytes, bytes], fail_publish: bool = False) -> None:
        self.table = table
        self.log: list[tuple[str, Any]] = []
        self.fail_publish = fail_publish

    async def publish(self, send: Send) -> Awaitable[Any]:
        self.log.append(("sent", send))
        if self.fail_publish and send.topic == SETTINGS.alerts_topic:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(ConnectionError("broker gone"))
            return future

        async def ack() -> None:
            await asyncio.sleep(0.01)
            self.log.append(("acked", send))

        return asyncio.ensure_future(ack())

    async def store(self, writes: list[StateWrite]) -> None:
        await asyncio.sleep(0)
        for write in writes:
            self.table[write.key] = write.value
        self.log.append(("stored", writes))


def handler(broker: Broker, processor: ResultProcessor | None = None) -> BatchHandler:
    states = PendingStates(broker.table)
    processor = processor or ResultProcessor(SETTINGS, Metrics(), states, clock=lambda: NOW)
    processor.table = states
    return BatchHandler(processor, states, broker.publish, broker.store)


def kinds(log: list[tuple[str, Any]]) -> list[str]:
    return [kind if kind == "stored" else f"{kind} {entry.topic}" for kind, entry in log]


@pytest.mark.asyncio
async def test_a_patient_twice_in_a_batch_sees_its_own_update_and_is_stored_once() -> None:
    broker = Broker({})
    await handler(broker).handle([
        item(raw("R-1", 0, neutrophils=1.2), offset=1),  # grade 2: new
        item(raw("R-2", 24, neutrophils=0.4), offset=2),  # grade 4: worsened
    ])  # fmt: skip
    alerts = [json.loads(s.value or b"") for k, s in broker.log if k == "sent" and
              s.topic == SETTINGS.alerts_topic]  # fmt: skip
    assert [(a["event"], a["grade"]) for a in alerts] == [("new", 2), ("worsened", 4)]
    stored = [entry for kind, entry in broker.log if kind == "stored"]
    assert len(stored) == 1
    assert [w.key for w in stored[0]] == [b"MRN-0042"]
    assert stored[0][0].partition == 1
    state = load_state(broker.table[b"MRN-0042"])
    assert [e.result_id for e in state.history] == ["R-1", "R-2"]


@pytest.mark.asyncio
async def test_every_alert_is_acknowledged_before_any_state_is_stored() -> None:
    broker = Broker({})
    await handler(broker).handle([
        item(raw("R-1", 0, "P-1", neutrophils=0.4), "P-1", offset=1),
        item(raw("R-2", 0, "P-2", neutrophils=0.4), "P-2", offset=2),
    ])  # fmt: skip
    order = kinds(broker.log)
    first_store = order.index("stored")
    alert_acks = [i for i, k in enumerate(order) if k == f"acked {SETTINGS.alerts_topic}"]
    assert len(alert_acks) == 2
    assert max(alert_acks) < first_store
    assert order.count("stored") == 1  # both patients in one store call
    assert {w.key for w in broker.log[first_store][1]} == {b"P-1", b"P-2"}


@pytest.mark.asyncio
async def test_a_failed_publication_stores_nothing_and_raises() -> None:
    broker = Broker({}, fail_publish=True)
    batch = handler(broker)
    with pytest.raises(ConnectionError):
        await batch.handle([item(raw("R-1", 0, neutrophils=0.4))])
    assert broker.table == {}
    assert "stored" not in kinds(broker.log)
    assert batch.states.take([b"MRN-0042"]) == {}  # nothing left pending for a later batch
    # Redelivered once the broker is back: the alert again, then the state.
    broker.fail_publish = False
    await batch.handle([item(raw("R-1", 0, neutrophils=0.4))])
    assert load_state(broker.table[b"MRN-0042"]).history[0].result_id == "R-1"


@pytest.mark.asyncio
@pytest.mark.parametrize("fails", ["publish", "store"])
async def test_a_failed_batch_leaves_no_cached_state_behind(fails: str) -> None:
    # With a table epoch the processor serves cached states without reading the table: a
    # state planned by a batch that failed must not be served as if it had been stored.
    broker = Broker({}, fail_publish=fails == "publish")
    states = PendingStates(broker.table)
    processor = ResultProcessor(SETTINGS, Metrics(), states, lambda: NOW, table_epoch=lambda: 1)
    batch = handler(broker, processor)
    if fails == "store":

        async def refuse(writes: list[StateWrite]) -> None:
            raise ConnectionError("changelog gone")

        batch.store = refuse
    with pytest.raises(ConnectionError):
        await batch.handle([item(raw("R-1", 0, neutrophils=0.4))])
    broker.fail_publish = False
    batch.store = broker.store
    broker.log.clear()
    await batch.handle([item(raw("R-1", 0, neutrophils=0.4))])  # redelivered
    alerts = [s for k, s in broker.log if k == "sent" and s.topic == SETTINGS.alerts_topic]
    assert [json.loads(a.value or b"")["event"] for a in alerts] == ["new"]


@pytest.mark.asyncio
async def test_a_message_whose_processing_raises_is_dead_lettered_alone() -> None:
    broker = Broker({})
    batch = handler(broker)
    original = batch.processor.plan

    def plan(value: bytes | None, key: bytes | None, origin: Origin) -> Any:
        if origin.offset == 2:
            raise KeyError("a bug of ours")
        return original(value, key, origin)

    batch.processor.plan = plan  # type: ignore[method-assign]
    await batch.handle([
        item(raw("R-1", 0, "P-1", neutrophils=0.4), "P-1", offset=1),
        item(raw("R-2", 0, "P-2", neutrophils=0.4), "P-2", offset=2),
    ])  # fmt: skip
    sent = [s for k, s in broker.log if k == "sent"]
    dead = [s for s in sent if s.topic == SETTINGS.dlq_topic]
    assert len(dead) == 1
    assert dict(dead[0].headers)["dlq.code"] == b"processing_error"
    assert set(broker.table) == {b"P-1"}


@pytest.mark.asyncio
async def test_only_the_last_summary_of_a_patient_is_published_with_the_alerts() -> None:
    """Acknowledged before the store, as the alerts: a crash before the store sends it again
    on redelivery (a tombstone, sent once, is never lost)."""
    broker = Broker({})
    chemo = T0 - timedelta(days=8)
    first = cbc("R-1", 0, patient_id="MRN-0042", last_chemo_at=chemo, neutrophils=1.2)
    second = cbc("R-2", 24, patient_id="MRN-0042", last_chemo_at=chemo, neutrophils=0.4)
    values = [
        r.model_copy(update={"collected_at": T0 + timedelta(hours=h)}).model_dump_json().encode()
        for r, h in ((first, 0), (second, 24))
    ]
    await handler(broker).handle([item(values[0], offset=1), item(values[1], offset=2)])
    summaries = [(i, s) for i, (k, s) in enumerate(broker.log)
                 if k == "sent" and s.topic == SETTINGS.summaries_topic]  # fmt: skip
    assert len(summaries) == 1
    position, summary = summaries[0]
    order = kinds(broker.log)
    assert position < order.index("stored")
    assert order.index(f"acked {SETTINGS.summaries_topic}") < order.index("stored")
    assert json.loads(summary.value or b"")["counts"]["neutrophils"]["value"] == 0.4


@pytest.mark.asyncio
async def test_a_result_and_a_temperature_in_two_agents_batches_both_reach_the_state() -> None:
    """Two agents (results and vitals) hold batches of one patient at once: the second waits
    for the first to store, so neither state write loses the other's event, and together they
    raise febrile neutropenia."""
    broker = Broker({})
    now = datetime.now(UTC)
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: datetime.now(UTC))
    batch = handler(broker, processor)
    received = time.time()
    result = cbc("R-1", 0, patient_id="MRN-0042", neutrophils=0.4)
    value = result.model_copy(update={"collected_at": now - timedelta(hours=1)})
    await asyncio.gather(
        batch.handle([Item(value.model_dump_json().encode(), b"MRN-0042",
                           Origin(BY_PATIENT, 0, 1, received))]),
        batch.handle([Item(temperature("MRN-0042", now - timedelta(minutes=30), 39.2),
                           b"MRN-0042", Origin(VITALS, 0, 1, received))]),
    )  # fmt: skip
    state = load_state(broker.table[b"MRN-0042"])
    assert [e.result_id for e in state.history] == ["R-1"]
    assert [t for _, t, _ in state.temperatures] == [39.2]
    alerts = [json.loads(s.value or b"") for k, s in broker.log
              if k == "sent" and s.topic == SETTINGS.alerts_topic]  # fmt: skip
    assert {(a["condition"], a["event"]) for a in alerts} == {
        ("neutropenia", "new"),
        ("febrile_neutropenia", "new"),
    }


def test_the_processor_must_read_through_the_pending_states() -> None:
    states = PendingStates({})
    processor = ResultProcessor(SETTINGS, Metrics(), {})
    with pytest.raises(ValueError, match="pending states"):
        BatchHandler(processor, states, Broker({}).publish, Broker({}).store)


def test_pending_states_shadow_the_table_until_taken() -> None:
    table = {b"P-1": b"old"}
    states = PendingStates(table)
    states[b"P-1"] = b"new"
    states[b"P-2"] = b"first"
    assert states[b"P-1"] == b"new"
    assert states.get(b"P-2") == b"first"
    assert table == {b"P-1": b"old"}
    assert states.take([b"P-1", b"P-3"]) == {b"P-1": b"new"}
    assert states[b"P-1"] == b"old"
    states.discard([b"P-2"])
    assert states.get(b"P-2") is None
    with pytest.raises(TypeError):
        del states[b"P-1"]


def test_last_per_key_keeps_the_newest_send_of_each_topic_and_key() -> None:
    sends = [Send("s", b"A", b"1"), Send("s", b"B", b"1"), Send("s", b"A", b"2"),
             Send("t", b"A", b"x")]  # fmt: skip
    assert [(s.key, s.value) for s in last_per_key(sends)] == [
        (b"B", b"1"), (b"A", b"2"), (b"A", b"x")
    ]  # fmt: skip


@pytest.mark.asyncio
async def test_the_gauges_move_once_the_states_are_stored() -> None:
    """A recount from the table after a rebalance (``ResultProcessor.recount``) can run while a
    batch awaits its acknowledgements: the gauges must not have counted a state the table does
    not hold yet, or the recount would drop that change for good."""
    broker = Broker({})
    batch = handler(broker)
    metrics = batch.processor.metrics

    def tracked() -> float:
        families = text_string_to_metric_families(metrics.exposition().decode())
        return next(
            s.value for f in families for s in f.samples if s.name == "monitor_patients_tracked"
        )

    seen_at_store: list[float] = []
    store = broker.store

    async def store_and_look(writes: list[StateWrite]) -> None:
        seen_at_store.append(tracked())
        await store(writes)

    batch.store = store_and_look
    await batch.handle([item(raw("R-1", 0, neutrophils=0.4))])
    assert seen_at_store == [0.0]
    assert tracked() == 1.0
