"""One lock per patient key, shared by every agent of a worker.

Each agent reads a patient's state, awaits the acknowledgements of the alerts it publishes, and
then writes the state back. Two agents (a result and a temperature of one patient, consumed from
their two topics) interleaving there would each write a state without the other's event. A lock
per message key (the patient id on every topic whose messages change a state) keeps one
patient's messages one at a time, while other patients' acknowledgement waits overlap.

A batch holds the keys of all its messages at once (``hold_all``); every batch takes them in
the same (sorted) order, so two batches that share keys cannot each wait for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable


class KeyedLocks:
    """``async with locks.hold(key)``: exclusive per key; a key's lock lives while it is held or
    awaited, so the map stays as small as the number of keys in flight."""

    def __init__(self) -> None:
        self._locks: dict[bytes | None, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: bytes | None) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @contextlib.asynccontextmanager
    async def hold_all(self, keys: Iterable[bytes | None]) -> AsyncIterator[None]:
        """Hold every key of ``keys`` (None included) until the block ends."""
        async with contextlib.AsyncExitStack() as stack:
            for key in sorted(set(keys), key=lambda k: (k is not None, k or b"")):
                await stack.enter_async_context(self.hold(key))
            yield

    def __len__(self) -> int:
        return len(self._locks)
