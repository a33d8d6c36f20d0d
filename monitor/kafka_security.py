"""How every Kafka client of the project connects: plaintext, TLS, SASL."""

from __future__ import annotations

from typing import Any

from monitor.settings import MonitorSettings


def aiokafka_security_kwargs(settings: MonitorSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    return {}
