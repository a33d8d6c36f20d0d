"""The decoded-state cache: when it may answer without the table's bytes, and when not."""

from __future__ import annotations

from monitor.clinical.history import PatientState
from monitor.clinical.stored_state import dump_state
from monitor.stream.state_cache import StateCache

KEY = b"MRN-0042"


class Epoch:
    def __init__(self) -> None:
        self.value: int | None = 1

    def __call__(self) -> int | None:
        return self.value


def stored_state(ward: str = "oncology-4b") -> tuple[bytes, PatientState]:
    state = PatientState(ward=ward)
    return dump_state(state), state


def test_an_entry_of_the_current_epoch_answers_without_the_table() -> None:
    epoch = Epoch()
    cache = StateCache(8, epoch)
    stored, state = stored_state()
    cache.put(KEY, stored, state)
    assert cache.trusted(KEY) == (stored, state)
    assert cache.trusted(b"other") is None


def test_after_a_new_epoch_the_table_is_read_again_and_its_bytes_decide() -> None:
    epoch = Epoch()
    cache = StateCache(8, epoch)
    stored, state = stored_state()
    cache.put(KEY, stored, state)
    epoch.value = 2  # a rebalance: a recovery may have changed the table
    assert cache.trusted(KEY) is None
    assert cache.get(KEY, stored) is state  # same bytes: the same decoded state, made current
    assert cache.trusted(KEY) == (stored, state)
    epoch.value = 3
    changed, _ = stored_state("haematology-2")
    fresh = cache.get(KEY, changed)
    assert fresh is not None
    assert fresh is not state
    assert fresh.ward == "haematology-2"


def test_nothing_is_trusted_while_the_epoch_is_unknown() -> None:
    epoch = Epoch()
    epoch.value = None  # a rebalance or its recovery is running
    cache = StateCache(8, epoch)
    stored, state = stored_state()
    cache.put(KEY, stored, state)
    assert cache.trusted(KEY) is None
    epoch.value = 4  # made while unknown: still not trusted once known
    assert cache.trusted(KEY) is None


def test_without_an_epoch_only_the_table_bytes_answer() -> None:
    cache = StateCache(8)
    stored, state = stored_state()
    cache.put(KEY, stored, state)
    assert cache.trusted(KEY) is None
    assert cache.get(KEY, stored) is state
    assert cache.get(KEY, None) is None
    assert len(cache) == 0


def test_a_forgotten_entry_is_not_trusted() -> None:
    cache = StateCache(8, Epoch())
    stored, state = stored_state()
    cache.put(KEY, stored, state)
    cache.forget(KEY)
    assert cache.trusted(KEY) is None
