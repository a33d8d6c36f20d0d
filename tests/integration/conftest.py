"""Fixtures for tests that talk the real Kafka protocol to the embedded Tansu broker.

A missing broker binary fails these tests; it never skips them (DESIGN.md, "Tests").
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from monitor.local.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One started embedded broker shared by the whole session, stopped at the end.

    Tests sharing it must use their own topic names (see ``unique_name``).
    """
    embedded = EmbeddedBroker().start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A topic or group name no other test uses, derived from the test's name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"
