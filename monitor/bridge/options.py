"""The bridge's options: the URL every request body is POSTed to, the consumer group it reads
the alert topic as, the keep-alive (resend) interval, and the retry backoff and HTTP timeout of
its posts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BridgeOptions:
    url: str  # where every request body is POSTed
    group: str
    resend_interval: float  # seconds between keep-alives
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    http_timeout: float = 10.0
