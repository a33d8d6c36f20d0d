"""End offsets counted per record, for a broker that counts them per record batch.

The embedded Tansu broker answers ListOffsets(latest) with the base offset of a partition's last
record batch + 1 (``monitor.local.tansu``), not the offset after its last record. Faust reads a
table's changelog up to that offset when it recovers the table, so with several records in the
last batch it would stop before the newest patient states. Instead of making every record a
batch of its own on the producer (which costs a broker round trip per record and rules out
producer batching), the reported end is corrected: the last batch is read from its base offset,
and the end is the offset after the last record found there.

The correction is exact on any broker: on Apache Kafka the reported end already follows the last
record, and reading from one before it finds that record (it costs a fetch per partition and
one last, empty poll).
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from typing import Any, Protocol, TypeVar

TP = TypeVar("TP", bound=Hashable)


class BatchReader(Protocol):
    """What the correction needs of a consumer: aiokafka's ``AIOKafkaConsumer`` started with no
    group (it assigns and seeks partitions itself)."""

    def assign(self, partitions: list[Any]) -> None: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    async def getmany(self, *partitions: Any, timeout_ms: int = ...) -> dict[Any, list[Any]]: ...


class EndOffsetError(RuntimeError):
    """The last record batch of a partition could not be read in time (names the topic and
    partition only)."""


async def record_end_offsets(
    reader: BatchReader, reported: Mapping[TP, int], *, timeout_s: float = 10.0
) -> dict[TP, int]:
    """Per partition, the offset after its last record.

    Each partition is read from its last batch's base offset until a poll brings nothing more
    for it, so a reader that returns a batch in parts (``max_poll_records``, a fetch size
    limit) still finds its last record.

    :param reader: a started consumer without a group; its assignment is replaced. Its polls
        should wait briefly (``fetch_max_wait_ms``): the last poll of each partition is empty.
    :param reported: the broker's end offsets (ListOffsets latest) per topic-partition, each the
        base offset of the last batch + 1 on a broker that counts batches.
    :param timeout_s: how long to wait for the first records of every last batch.
    :returns: the corrected end offsets: ``reported`` where it is 0 (an empty partition), else
        the last record's offset + 1 (never less than ``reported``).
    :raises EndOffsetError: when a partition's last batch was not read within ``timeout_s`` (an
        end offset short of the last record would silently lose table state on recovery).
    """
    ends = dict(reported)
    waiting = {tp: end for tp, end in reported.items() if end > 0}
    if not waiting:
        return ends
    reader.assign(list(waiting))
    for tp, end in waiting.items():
        reader.seek(tp, end - 1)
    last: dict[TP, int] = {}  # the highest offset read so far, per partition
    deadline = asyncio.get_running_loop().time() + timeout_s
    while waiting:
        left = deadline - asyncio.get_running_loop().time()
        unread = [tp for tp in waiting if tp not in last]
        if unread and left <= 0:
            names = ", ".join(f"{_topic(tp)}[{_partition(tp)}]" for tp in unread)
            raise EndOffsetError(f"the last record batch of {names} was not read in time")
        if left <= 0:  # still growing (being written to): its end is at least what was read
            ends.update({tp: max(end, last[tp] + 1) for tp, end in waiting.items()})
            break
        fetched = await reader.getmany(*waiting, timeout_ms=int(max(min(left, 0.5), 0.05) * 1000))
        # Faust's TP and aiokafka's TopicPartition are named tuples with the same fields: equal
        # and with the same hash, so either finds the other's entry.
        grown = {tp for tp, records in fetched.items() if records and tp in waiting}
        for tp in grown:
            last[tp] = max(last.get(tp, -1), fetched[tp][-1].offset)
        for tp in [tp for tp in waiting if tp in last and tp not in grown]:
            ends[tp] = max(waiting.pop(tp), last[tp] + 1)
    return ends


def _topic(tp: Any) -> str:
    return str(tp.topic)


def _partition(tp: Any) -> int:
    return int(tp.partition)
