"""Topic creation with configs: a broker refusing a config gets the topic without it."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from monitor.kafka import topics as topics_module
from monitor.kafka.topics import TopicError, create_topics

INVALID_CONFIG = 40  # Kafka protocol error code


class Response:
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors

    def to_object(self) -> dict[str, Any]:
        return {"topic_errors": self.errors}


class FakeAdmin:
    """Refuses any topic created with configs when ``refuse_configs``; records each request."""

    instances: ClassVar[list[FakeAdmin]] = []
    refuse_configs: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        self.requests: list[list[tuple[str, int, dict[str, str]]]] = []
        self.created: dict[str, int] = {}
        FakeAdmin.instances.append(self)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create_topics(self, new_topics: list[Any]) -> Response:
        self.requests.append(
            [(t.name, t.num_partitions, dict(t.topic_configs)) for t in new_topics]
        )
        errors = []
        for t in new_topics:
            refused = self.refuse_configs and bool(t.topic_configs)
            if not refused:
                self.created[t.name] = t.num_partitions
            errors.append({"topic": t.name, "error_code": INVALID_CONFIG if refused else 0})
        return Response(errors)

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "topic": name,
                "error_code": 0,
                "partitions": [{"leader": 0}] * self.created.get(name, 0),
            }
            for name in names
            if name in self.created
        ]


@pytest.fixture(autouse=True)
def fake_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAdmin.instances.clear()
    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", FakeAdmin)


@pytest.mark.asyncio
async def test_configs_go_with_their_topic_only() -> None:
    FakeAdmin.refuse_configs = False
    await create_topics("b:9092", {"s": 2, "a": 2}, configs={"s": {"cleanup.policy": "compact"}})
    (admin,) = FakeAdmin.instances
    assert admin.requests == [[("s", 2, {"cleanup.policy": "compact"}), ("a", 2, {})]]


@pytest.mark.asyncio
async def test_a_refused_config_is_dropped_and_the_topic_created_without_it() -> None:
    FakeAdmin.refuse_configs = True
    await create_topics("b:9092", {"s": 3, "a": 3}, configs={"s": {"cleanup.policy": "compact"}})
    (admin,) = FakeAdmin.instances
    assert admin.requests[1] == [("s", 3, {})]
    assert admin.created == {"s": 3, "a": 3}


@pytest.mark.asyncio
async def test_a_topic_without_configs_that_is_refused_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Refusing(FakeAdmin):
        async def create_topics(self, new_topics: list[Any]) -> Response:
            return Response([{"topic": t.name, "error_code": 41} for t in new_topics])

    monkeypatch.setattr(topics_module, "AIOKafkaAdminClient", Refusing)
    with pytest.raises(TopicError, match="error 41"):
        await create_topics("b:9092", {"a": 1})
