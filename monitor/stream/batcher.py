"""Natural batching: a stream's events handed on in batches of whatever arrived while the last
batch was being handled, never waiting on a timer when there is work.

An agent adds each event as its stream delivers it (:meth:`Batcher.add`); a task of the
batcher's own hands the events gathered so far to ``handle`` as one batch, and, while that batch
awaits its acknowledgements, the next events keep arriving into the next batch. So at a low
rate a result is handled as soon as it arrives, and under load batches grow up to
``max_size`` by themselves. Faust's ``Stream.noack_take`` instead waits its full ``within``
for each batch and takes no event in while a batch is handled (faust/streams.py,
``add_to_buffer`` awaits ``buffer_consuming``): a batch's acknowledgement waits then stalled
the stream.

Batches are handed on one at a time and in arrival order. When ``handle`` raises, the batcher
stops: the error is raised to the agent from its next :meth:`add` (or :meth:`close`), and no
later batch is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchFailedError(RuntimeError):
    """The batcher's handler failed before; nothing more is taken in."""


class Batcher(Generic[T]):
    """Hand events to ``handle`` in batches of at most ``max_size``, one batch at a time.

    ``linger_s``: after the first event of a batch arrives, how long to wait for more before
    handing it on (0: at once, after letting the events already delivered in).

    Use as an async context manager: entering starts the handler task. Leaving normally waits
    until every event added is handled and raises :class:`BatchFailedError` if a batch failed;
    leaving on an exception (the agent cancelled) cancels the handler task, abandoning a batch
    being handled (its events were never acknowledged, so they are delivered again).
    """

    def __init__(
        self, handle: Callable[[list[T]], Awaitable[None]], max_size: int, linger_s: float = 0.0
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._handle = handle
        self._max_size = max_size
        self._linger_s = linger_s
        self._buffer: list[T] = []
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()  # nothing waiting, no batch being handled
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def __aenter__(self) -> Batcher[T]:
        self._task = asyncio.create_task(self._run(), name="batcher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        try:
            if exc is None and task is not None:
                idle = asyncio.ensure_future(self._idle.wait())
                try:
                    await asyncio.wait([idle, task], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    idle.cancel()
        finally:
            self._task = None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if exc is None and self.error is not None:
            raise BatchFailedError("a batch failed") from self.error

    async def add(self, item: T) -> None:
        """Queue ``item`` for the next batch; wait while ``max_size`` are already waiting.

        :raises BatchFailedError: the handler failed (its exception is the cause).
        """
        self._check()
        while len(self._buffer) >= self._max_size:
            self._room.clear()
            await self._room.wait()
            self._check()
        self._buffer.append(item)
        self._idle.clear()
        self._arrived.set()

    @property
    def waiting(self) -> int:
        """Events queued for the next batch."""
        return len(self._buffer)

    def _check(self) -> None:
        if self.error is not None:
            raise BatchFailedError("a batch failed; nothing more is taken in") from self.error
        if self._task is None:
            raise RuntimeError("the batcher is not running (use it with async with)")

    async def _run(self) -> None:
        try:
            while True:
                await self._arrived.wait()
                if self._linger_s > 0:
                    await asyncio.sleep(self._linger_s)
                else:
                    await asyncio.sleep(0)  # let events delivered meanwhile in
                batch = self._buffer[: self._max_size]
                del self._buffer[: self._max_size]
                if not self._buffer:
                    self._arrived.clear()
                self._room.set()
                await self._handle(batch)
                if not self._buffer:
                    self._idle.set()
        except Exception as exc:
            self.error = exc
            self._room.set()  # wake an add() waiting for room: it raises
