"""Topic administration for production and tools: create topics with their partition counts.

Faust does not create an external source topic, and a broker that auto-creates unknown topics
(the embedded one does, with 4 partitions, as soon as a client asks for their metadata) would give
the source a count other than the table changelog's, so the worker creates every topic it uses
before its agents start (DESIGN.md, "Create the topics yourself").
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

__all__ = ["TopicError", "TopicMismatchError", "create_topics"]

_TOPIC_ALREADY_EXISTS = 36  # Kafka protocol error code
_METADATA_TIMEOUT = 30.0  # seconds for created topics to show up in metadata


class TopicError(RuntimeError):
    """The broker refused to create a topic."""


class TopicMismatchError(TopicError):
    """A topic already exists with a partition count other than the one requested."""


async def create_topics(
    bootstrap: str,
    topics: dict[str, int],
    replication: int = 1,
    security: Mapping[str, Any] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create ``topics`` (name -> partition count) and wait until metadata shows all of them.

    ``security``: aiokafka's TLS/SASL arguments (``monitor.kafka.security``); plaintext if None.
    ``configs``: topic configs by name (e.g. ``{"cleanup.policy": "compact"}``); a topic the
    broker refuses with its configs (one without compaction) is created again without them.

    Idempotent: a topic that already exists with the requested partition count is fine.

    :raises TopicMismatchError: if a topic exists with a different partition count (Faust would
        then fail every table write with ``PartitionsMismatch``).
    :raises TopicError: if the broker refuses to create a topic.
    :raises TimeoutError: if the topics do not show up in metadata within 30 s.
    """
    if not topics:
        return
    for name, partitions in topics.items():
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partition count must be >= 1, not {partitions}")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=30_000, **(security or {})
    )
    await admin.start()
    try:
        configs = configs or {}
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication, topic_configs=dict(configs.get(name, {})))
                for name, partitions in topics.items()
            ]
        )
        errors = {e["topic"]: e for e in response.to_object()["topic_errors"]}
        retry = [
            name
            for name, error in errors.items()
            if configs.get(name) and error["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if retry:
            again = await admin.create_topics(
                [NewTopic(name, topics[name], replication) for name in retry]
            )
            errors.update({e["topic"]: e for e in again.to_object()["topic_errors"]})
        refused = [
            f"{name}: error {error['error_code']} {error.get('error_message') or ''}".strip()
            for name, error in errors.items()
            if error["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if refused:
            raise TopicError(f"the broker refused to create topics: {'; '.join(refused)}")
        existing = {
            name for name, error in errors.items() if error["error_code"] == _TOPIC_ALREADY_EXISTS
        }
        try:
            async with asyncio.timeout(_METADATA_TIMEOUT):
                await _wait_for_partitions(admin, topics, existing)
        except TimeoutError as exc:
            raise TimeoutError(
                f"topics {sorted(topics)} did not show up in metadata within {_METADATA_TIMEOUT}s"
            ) from exc
    finally:
        await admin.close()


async def _wait_for_partitions(
    admin: AIOKafkaAdminClient,
    topics: dict[str, int],
    existing: set[str],
) -> None:
    """Poll metadata until every topic lists its partitions, each with a leader.

    Topics in ``existing`` were there before this call: they must already have the requested
    partition count. The others were just created and are waited for.
    """
    while True:
        # Every topic exists by now, so this metadata request cannot auto-create one.
        described = await admin.describe_topics(list(topics))
        found: dict[str, int] = {}
        for topic in described:
            partitions = topic["partitions"]
            if topic["error_code"] == 0 and all(p["leader"] >= 0 for p in partitions):
                found[topic["topic"]] = len(partitions)
        mismatched = [
            f"{name} has {found[name]}, wanted {topics[name]}"
            for name in sorted(existing)
            if name in found and found[name] != topics[name]
        ]
        if mismatched:
            raise TopicMismatchError(
                "topics already exist with other partition counts: " + ", ".join(mismatched)
            )
        if all(found.get(name) == wanted for name, wanted in topics.items()):
            return
        await asyncio.sleep(0.1)
