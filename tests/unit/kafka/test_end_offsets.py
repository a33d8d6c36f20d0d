"""End offsets counted per record (``monitor.kafka.end_offsets``) from a reader that returns a
partition's last batch, as a broker that counts ends per batch reports them."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import pytest
from aiokafka import TopicPartition

from monitor.kafka.end_offsets import EndOffsetError, record_end_offsets

Record = namedtuple("Record", "offset")


class Reader:
    """Partitions as lists of batches of record offsets; a fetch from an offset returns the
    records of the batch holding it and every later batch, as a broker does."""

    def __init__(
        self,
        logs: dict[TopicPartition, list[list[int]]],
        answers: bool = True,
        max_records: int | None = None,
    ) -> None:
        self.logs = logs
        self.positions: dict[Any, int] = {}
        self.answers = answers
        self.max_records = max_records  # per poll and partition, as max_poll_records limits

    def assign(self, partitions: list[Any]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    def seek(self, partition: Any, offset: int) -> None:
        self.positions[partition] = offset

    async def getmany(self, *partitions: Any, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        if not self.answers:
            return {}
        out = {}
        for tp in partitions:
            start = self.positions[tp]
            batches = [b for b in self.logs[tp] if b[-1] >= start]
            records = [Record(o) for b in batches for o in b if o >= start]
            out[tp] = records[: self.max_records]
            if out[tp]:
                self.positions[tp] = out[tp][-1].offset + 1
        return out


A, B, C = (TopicPartition("changelog", p) for p in range(3))


@pytest.mark.asyncio
async def test_the_end_follows_the_last_record_of_the_last_batch() -> None:
    logs = {A: [[0], [1, 2, 3, 4]], B: [[0, 1], [2]], C: []}
    reported = {A: 2, B: 3, C: 0}  # the last batch's base offset + 1; 0 for an empty partition
    assert await record_end_offsets(Reader(logs), reported) == {A: 5, B: 3, C: 0}


@pytest.mark.asyncio
async def test_faust_topic_partitions_find_their_records() -> None:
    from faust.types import TP

    logs = {A: [[0, 1, 2]]}
    assert await record_end_offsets(Reader(logs), {TP("changelog", 0): 1}) == {
        TP("changelog", 0): 3
    }


@pytest.mark.asyncio
async def test_an_unreadable_last_batch_is_an_error_naming_only_the_partition() -> None:
    with pytest.raises(EndOffsetError, match=r"changelog\[1\]"):
        await record_end_offsets(Reader({B: [[0, 1]]}, answers=False), {B: 1}, timeout_s=0.05)


@pytest.mark.asyncio
async def test_a_last_batch_returned_in_parts_is_read_to_its_end() -> None:
    """A reader limited to one record a poll (Faust's broker_max_poll_records) still finds
    the last record of a multi-record last batch."""
    logs = {A: [[0], [1, 2, 3, 4]], B: [[0, 1, 2]]}
    reader = Reader(logs, max_records=1)
    assert await record_end_offsets(reader, {A: 2, B: 1}) == {A: 5, B: 3}
