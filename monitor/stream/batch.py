"""A batch of input messages through the processor, with the guarantees of one message at a time.

The worker's agents take their input in batches (``monitor.stream.app``) and hand each batch to
:class:`BatchHandler`, which does, in this order:

1. plan every message against the patient states as this batch leaves them
   (:class:`PendingStates`: a patient seen twice in a batch sees its own earlier update); a
   message whose processing raises is dead-lettered, alone, as before;
2. hand every send of the batch (alerts, dead letters, messages forwarded keyed by patient) to
   the producer in message order, then each touched patient's watch-list summary (the last one
   only), and await all their acknowledgements at once;
3. write each touched patient's state once (the last state of the batch), and await it.

The caller acknowledges the batch's input messages only after this returns, so offsets move only
past messages whose alerts and states are both stored. A crash anywhere repeats the batch:
alerts are repeated with the same ids (``clinical.alert``), never lost. Summaries go out with
the alerts, before the state that records them (``PatientState.summary_published``): a
summary or a tombstone lost with a crash is sent again when the batch is redelivered.

An exception after planning (the producer or the store failed) propagates; the agent must then
stop the worker rather than go on past the batch (``MonitorApp._fail_stop``).

Nothing here knows Faust: the caller passes how to publish and how to store the states.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from monitor.stream.locks import KeyedLocks
from monitor.stream.processor import Origin, Plan, ResultProcessor, Send

log = logging.getLogger("monitor.worker")


@dataclass(frozen=True, slots=True)
class Item:
    """One input message of a batch."""

    value: bytes | None
    key: bytes | None
    origin: Origin


@dataclass(frozen=True, slots=True)
class StateWrite:
    """A patient's state to store: key and value bytes, in the partition of the input message
    that changed it (the table's changelog is co-partitioned with its input topics)."""

    key: bytes
    value: bytes
    partition: int


Publish = Callable[[Send], Awaitable[Awaitable[Any]]]
StoreStates = Callable[[list[StateWrite]], Awaitable[None]]


class PendingStates(MutableMapping[bytes, bytes]):
    """The patient table as the batch being planned sees it: what the batch wrote, else the
    table. Writes stay here until :meth:`take` hands them to the store; the processor's table.

    Shared by every agent of a worker: a batch takes only its own keys, and the keys a batch
    plans are locked to it (:meth:`KeyedLocks.hold_all`), so no other batch reads or writes them
    until it has stored them.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self._pending: dict[bytes, bytes] = {}

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._pending:
            return self._pending[key]
        return self.table[key]

    def get(self, key: bytes, default: Any = None) -> Any:
        if key in self._pending:
            return self._pending[key]
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def __delitem__(self, key: bytes) -> None:
        raise TypeError("patient states are replaced, never deleted, during a batch")

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def take(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Remove and return the pending writes of ``keys`` (those it has)."""
        return {key: self._pending.pop(key) for key in keys if key in self._pending}

    def discard(self, keys: Iterable[bytes]) -> None:
        """Forget the pending writes of ``keys`` (a batch that failed before storing them)."""
        for key in keys:
            self._pending.pop(key, None)


class BatchHandler:
    """Plan, publish and store one batch at a time per agent (see the module docstring).

    ``processor.table`` must be ``states``: the processor reads and writes the patient states
    through it.
    """

    def __init__(
        self,
        processor: ResultProcessor,
        states: PendingStates,
        publish: Publish,
        store: StoreStates,
        locks: KeyedLocks | None = None,
    ) -> None:
        if processor.table is not states:
            raise ValueError("the processor must read and write through the pending states")
        self.processor = processor
        self.states = states
        self.publish = publish
        self.store = store
        self.locks = locks or KeyedLocks()

    async def handle(self, items: list[Item]) -> None:
        """Process ``items`` (in offset order per partition) as the module docstring says.

        :raises Exception: whatever publishing or storing raised; nothing of the batch may then
            be acknowledged.
        """
        # Each message that changes a state is keyed by its patient (the processor forwards
        # the others keyed by patient first), so its key is the state's key.
        keys = {item.key for item in items}
        async with self.locks.hold_all(keys):
            planned: list[tuple[Item, Plan]] = []
            partitions: dict[bytes, int] = {}
            try:
                for item in items:
                    plan = self._plan(item)
                    if plan.write is not None:
                        self.processor.write(plan)  # into the pending states
                        partitions[plan.write[0]] = item.origin.partition
                    planned.append((item, plan))
                delivered = []
                for item, plan in planned:
                    for send in plan.sends:
                        delivered.append(await self.publish(send))
                        self.processor.published(send, item.origin)
                for send in last_per_key(s for _, plan in planned for s in plan.after):
                    delivered.append(await self.publish(send))
                if delivered:
                    await asyncio.gather(*delivered)
                written = self.states.take(partitions)
                if written:
                    await self.store(
                        [StateWrite(key, value, partitions[key]) for key, value in written.items()]
                    )
            except BaseException:
                self.processor.unstored(partitions)
                raise
            finally:
                self.states.discard(partitions)
            # With no await since the store: a recount of the gauges from the table (after a
            # rebalance) sees either both the states and these moves, or neither.
            for _, plan in planned:
                self.processor.stored(plan)

    def _plan(self, item: Item) -> Plan:
        try:
            return self.processor.plan(item.value, item.key, item.origin)
        except Exception as exc:  # a fault of ours, not of the input: keep it for replay
            origin = item.origin
            log.error(
                "processing failed with %s at %s[%d]@%d; sent to the dead-letter topic",
                type(exc).__name__,
                origin.topic,
                origin.partition,
                origin.offset,
            )
            return Plan([self.processor.failed(item.value, item.key, origin, exc)])


def last_per_key(sends: Iterable[Send]) -> list[Send]:
    """The last send of each (topic, key), in the order of those last sends: a patient's newer
    summary replaces its older one on the compacted summaries topic anyway."""
    last: dict[tuple[str, bytes | None], Send] = {}
    for send in sends:
        last.pop((send.topic, send.key), None)
        last[(send.topic, send.key)] = send
    return list(last.values())
