"""Natural batching: a stream's events handed on in batches of whatever arrived while the last
batch was being handled, growing while more keep coming, never waiting when there are none.

An agent adds each event as its stream delivers it (:meth:`Batcher.add`); a task of the
batcher's own hands the events gathered so far to ``handle`` as one batch, and, while that batch
awaits its acknowledgements, the next events keep arriving into the next batch. Before handing a
batch on, the batcher lets it grow while events keep coming (each within ``QUIET_S`` of the
last), for at most ``linger_s``. So a result arriving alone is handled at once (after
``QUIET_S``), and under a backlog batches grow to hundreds of messages, whose acknowledgements
and state writes are awaited once. Faust's ``Stream.noack_take`` instead waits its full
``within`` for each batch and takes no event in while a batch is handled (faust/streams.py,
``add_to_buffer`` awaits ``buffer_consuming``): a batch's acknowledgement waits then stalled
the stream.

Batches are handed on one at a time and in arrival order. When ``handle`` raises, the batcher
stops: the error is raised to the agent from its next :meth:`add` (or on leaving), and no
later batch is handled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

# How long without a new event ends a batch's growth: a Faust stream that holds more events
# delivers the next well within it.
QUIET_S = 0.001


class BatchFailedError(RuntimeError):
    """The batcher's handler failed before; nothing more is taken in."""


class Batcher(Generic[T]):
    """Hand events to ``handle`` in batches of at most ``max_size``, one batch at a time.

    ``linger_s``: how long at most a batch keeps growing while events keep coming (0: handed
    on at once with the events already delivered).

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
        self.closing = False  # set when leaving: a cancellation is then ours, not a failure

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
        self.closing = exc is not None
        try:
            if exc is None and task is not None:
                idle = asyncio.ensure_future(self._idle.wait())
                try:
                    await asyncio.wait([idle, task], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    idle.cancel()
        finally:
            self._task = None
            self.closing = True
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

    async def _gather(self) -> None:
        """Let the next batch grow while events keep coming: until ``QUIET_S`` passes without
        a new one (the stream has nothing more ready), the batch is full, or ``linger_s`` has
        passed since it started growing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        await asyncio.sleep(0)  # the events delivered meanwhile
        while len(self._buffer) < self._max_size and loop.time() < deadline:
            before = len(self._buffer)
            await asyncio.sleep(QUIET_S)
            if len(self._buffer) == before:
                return

    @property
    def waiting(self) -> int:
        """Events queued for the next batch."""
        return len(self._buffer)

    def _check(self) -> None:
        if self.error is not None:
            raise BatchFailedError("a batch failed; nothing more is taken in") from self.error
        if self._task is None:
            raise RuntimeError("the batcher is not running (use it with async with)")
        if self._task.done():
            raise BatchFailedError("the batcher's task has ended; nothing more is taken in")

    async def _run(self) -> None:
        try:
            while True:
                await self._arrived.wait()
                await self._gather()
                batch = self._buffer[: self._max_size]
                del self._buffer[: self._max_size]
                if not self._buffer:
                    self._arrived.clear()
                self._room.set()
                await self._handle(batch)
                if not self._buffer:
                    self._idle.set()
        except asyncio.CancelledError as exc:
            if self.closing:
                raise
            # Cancelled from inside a batch (an awaited send cancelled): a failed batch too.
            self.error = exc
            self._room.set()
        except Exception as exc:
            self.error = exc
            self._room.set()  # wake an add() waiting for room: it raises
