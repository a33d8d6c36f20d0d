"""HTTP posting with retry: each JSON request body is POSTed until the receiver accepts it (2xx),
retried with exponential backoff (never dropped) unless the bridge is asked to stop. Logs name
HTTP statuses and exception classes, never a body's content."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from monitor.bridge.metrics import BridgeMetrics, Outcome
from monitor.bridge.options import BridgeOptions

log = logging.getLogger("monitor.bridge")


class StopRequestedError(Exception):
    """The bridge was asked to stop while a post was still being retried."""


def backoff_delays(initial: float, maximum: float) -> Callable[[], float]:
    """Doubling delays from ``initial``, capped at ``maximum``."""
    delay = initial / 2

    def following() -> float:
        nonlocal delay
        delay = min(maximum, delay * 2)
        return delay

    return following


class Poster:
    """POSTs JSON bodies to one URL until each is accepted (2xx), or the bridge stops.

    Every attempt is counted by outcome; ``retrying`` is 1 from a post's first failure until it
    is accepted (a stop while retrying leaves it at 1: the post never went through)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        name: str,
        options: BridgeOptions,
        stopping: asyncio.Event,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self._session = session
        self._name = name
        self._options = options
        self._stopping = stopping
        self.metrics = metrics if metrics is not None else BridgeMetrics(name)
        self.posted = 0

    async def post(self, body: Any) -> None:
        delays = backoff_delays(self._options.initial_backoff, self._options.max_backoff)
        retrying = False
        while True:
            outcome: Outcome
            try:
                async with self._session.post(self._options.url, json=body) as response:
                    if 200 <= response.status < 300:
                        self.metrics.post_attempt("ok")
                        if retrying:
                            self.metrics.retry_ended()
                        self.posted += 1
                        return
                    outcome, problem = "http_error", f"answered HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome, problem = "unreachable", f"unreachable ({type(exc).__name__})"
            self.metrics.post_attempt(outcome)
            if not retrying:
                retrying = True
                self.metrics.retry_started()
            delay = delays()
            log.warning("%s %s; retrying in %.1f s", self._name, problem, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            if self._stopping.is_set():
                raise StopRequestedError
