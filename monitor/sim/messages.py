"""What the simulator publishes: messages, how each is delivered and the feed it belongs to.

A ``SimMessage`` is one message as a producer would send it to its feed's topic (``Topic``: the
lab feeds ``results``, ``hl7v2`` and ``fhir``, plus the clinical context feeds ``treatments``
and ``vitals``), delivered as a first ``result``, a ``redelivery``, a ``late`` result or a
deliberately ``malformed`` message (``MessageKind``). A ``Draft`` is a message still being
assembled, before the cohort sorts every draft by publication time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "LAB_TOPICS",
    "MAX_MESSAGE_BYTES",
    "TOPICS",
    "Draft",
    "MessageKind",
    "SimMessage",
    "Topic",
]

MessageKind = Literal["result", "redelivery", "late", "malformed"]
# The logical feed a message belongs to (the real topic names are settings).
Topic = Literal["results", "hl7v2", "fhir", "treatments", "vitals"]
TOPICS: Final[tuple[Topic, ...]] = ("results", "hl7v2", "fhir", "treatments", "vitals")
LAB_TOPICS: Final[frozenset[str]] = frozenset({"results", "hl7v2", "fhir"})

MAX_MESSAGE_BYTES: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message as it would be produced to its feed's topic.

    ``kind`` says how it is delivered (a first, on-time publication is a ``result``, whatever the
    feed); ``topic`` says what it carries. A message of the ``hl7v2`` or ``fhir`` feed also
    carries, in ``canonical``, the canonical JSON result its bytes encode.
    """

    key: bytes | None  # patient id as UTF-8 (None for a few malformed ones)
    value: bytes  # the message bytes (or deliberately broken bytes)
    kind: MessageKind
    sent_at_day: float  # simulated day (from cohort start) at which it is published
    topic: Topic = "results"
    canonical: bytes | None = None  # hl7v2 / fhir: the canonical JSON of the encoded result

    @property
    def result_json(self) -> bytes | None:
        """The canonical JSON result this message carries (None for treatments and vitals)."""
        if self.topic == "results":
            return self.value
        return self.canonical


@dataclass(slots=True)
class Draft:
    """A message being assembled; ``seq`` keeps the order drafts were made in among equal times."""

    key: bytes | None
    value: bytes
    kind: MessageKind
    sent_at_day: float
    seq: int = field(default=0)
    topic: Topic = "results"
    canonical: bytes | None = None
