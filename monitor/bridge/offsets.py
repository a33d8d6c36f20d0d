"""The bridge's consumer offsets on the alert topic: where the start-up rebuild begins collecting
the changes the group has not handled, committing (the start-up targets, then each handled
record), and giving up on partitions whose end offset moved back during the rebuild."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

log = logging.getLogger("monitor.bridge")


def start_offsets(
    committed: Mapping[TopicPartition, int | None],
) -> dict[TopicPartition, int | None]:
    """Per partition, the offset from which the group has not handled the changes: its commit,
    or 0 for a partition it never committed while it has commits elsewhere (nothing from that
    partition was ever posted). A group without any commit gets None everywhere: a first run,
    whose start-up sync covers every open episode instead."""
    if all(offset is None for offset in committed.values()):
        return dict.fromkeys(committed)
    return {tp: offset or 0 for tp, offset in committed.items()}


async def commit(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """Commit; a failure (a rebalance took the partition) only means a redelivery, which the
    book recognises as a repeat."""
    try:
        await consumer.commit({tp: offset})
    except KafkaError as exc:
        log.warning("commit on partition %d failed (%s)", tp.partition, type(exc).__name__)
        return False
    return True


async def commit_floors(consumer: AIOKafkaConsumer, pending: dict[TopicPartition, int]) -> None:
    """Commit the start-up targets of the pending partitions the group now holds (unless its
    commit is already further), so that every partition has a commit once the start-up sync is
    posted; a partition whose commit failed stays pending for the next round."""
    assigned = consumer.assignment()
    for tp in [tp for tp in pending if tp in assigned]:
        try:
            committed = await consumer.committed(tp)
        except KafkaError as exc:
            log.warning(
                "reading the commit of partition %d failed (%s)", tp.partition, type(exc).__name__
            )
            continue
        if (committed is None or committed < pending[tp]) and not await commit(
            consumer, tp, pending[tp]
        ):
            continue
        del pending[tp]


async def unstall(reader: AIOKafkaConsumer, remaining: set[TopicPartition]) -> set[TopicPartition]:
    """Stop waiting for partitions that have no more records (their end moved back, e.g.
    trailing control records); the group consumer reads whatever follows."""
    ends = await reader.end_offsets(list(remaining))
    still = {tp for tp in remaining if await reader.position(tp) < ends[tp]}
    for tp in remaining - still:
        log.warning("rebuild: partition %d ended before its expected offset", tp.partition)
    return still
