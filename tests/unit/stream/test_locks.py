"""One lock per patient key: one key's holders take turns, other keys run alongside, and the
map forgets a key once nobody holds or awaits it."""

from __future__ import annotations

import asyncio

import pytest

from monitor.stream.locks import KeyedLocks


async def _hold(locks: KeyedLocks, key: bytes | None, log: list[str], name: str) -> None:
    async with locks.hold(key):
        log.append(f"{name} in")
        await asyncio.sleep(0.01)
        log.append(f"{name} out")


@pytest.mark.asyncio
async def test_one_key_is_held_by_one_at_a_time() -> None:
    locks, log = KeyedLocks(), []
    await asyncio.gather(_hold(locks, b"P-1", log, "a"), _hold(locks, b"P-1", log, "b"))
    assert log == ["a in", "a out", "b in", "b out"]
    assert len(locks) == 0


@pytest.mark.asyncio
async def test_other_keys_do_not_wait() -> None:
    locks, log = KeyedLocks(), []
    await asyncio.gather(_hold(locks, b"P-1", log, "a"), _hold(locks, b"P-2", log, "b"))
    assert log[:2] == ["a in", "b in"]
    assert len(locks) == 0


@pytest.mark.asyncio
async def test_a_failing_holder_releases_the_key() -> None:
    locks = KeyedLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold(None):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with locks.hold(None):
        assert len(locks) == 1


@pytest.mark.asyncio
async def test_batches_holding_overlapping_keys_in_any_order_do_not_deadlock() -> None:
    locks, log = KeyedLocks(), []

    async def batch(name: str, keys: list[bytes | None]) -> None:
        async with locks.hold_all(keys):
            log.append(f"{name} in")
            await asyncio.sleep(0.01)
            log.append(f"{name} out")

    await asyncio.wait_for(
        asyncio.gather(
            batch("a", [b"P-1", b"P-2", None]),
            batch("b", [b"P-2", None, b"P-1"]),
            batch("c", [b"P-3"]),
        ),
        timeout=2,
    )
    assert log.index("a out") < log.index("b in")  # a and b share keys: one after the other
    assert log.index("c in") < log.index("a out")  # c shares none: alongside
    assert len(locks) == 0
