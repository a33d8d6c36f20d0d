"""The worker's start-up: the heap is settled before consuming."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from monitor.stream.worker import GC_GEN0_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settling_the_heap_freezes_what_is_alive_and_collects_young_objects_less_often() -> None:
    gc.unfreeze()
    alive = [[n] for n in range(1000)]  # tracked objects alive at start-up
    settle_heap()
    assert gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD > 700
