"""Events dated after their message was received: refused, so they cannot hide later events.

A result, temperature or treatment cannot have happened after the message carrying it reached
us. Such a time is a data error (a typo in the year, a device clock, a time zone written the
wrong way round; CLINICAL.md section 7), and it is a dangerous one: the detector orders a
patient's events by their own time, so an accepted event dated in the future would make every
real result that follows look "late" (which updates history but never pages), silencing the
patient until the false date passes. Clamping the bad time to the receipt time is not enough:
a real result received afterwards can carry a plausible collection time earlier than that.

So an event whose time is later than its message's receipt time plus a small tolerance for clock
skew is dead-lettered with code ``collected_in_future``, whatever the feed. The tolerance
(``MONITOR_FUTURE_TOLERANCE_MINUTES``, default 5) covers the clocks of analyzers, LIS and
brokers that are set by hand or drift; 5 minutes is also the maximum clock skew Kerberos
accepts by default (RFC 4120 section 1.6 calls it "typically 5 minutes"), a long-standing
operational figure for "clocks that should agree". An event dated inside the tolerance but
after its receipt is kept with its time read as the receipt time (the clock skew the tolerance
forgives): it is then no later than any real event received after it, so it hides nothing.

Pure: the caller passes the receipt time (the Kafka message timestamp in the worker, the replay
clock offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from monitor.adapters.intake import Rejected
from monitor.clinical.context import Treatment, VitalSign
from monitor.clinical.model import CBCResult

__all__ = [
    "CODE",
    "DEFAULT_TOLERANCE",
    "event_time",
    "in_future",
    "screen_future",
    "within_receipt",
]

CODE = "collected_in_future"
DEFAULT_TOLERANCE = timedelta(minutes=5)

Event = CBCResult | VitalSign | Treatment
E = TypeVar("E", CBCResult, VitalSign, Treatment)


# The field that holds when each kind of event happened: a result's collection, a temperature's
# measurement, a dose.
_TIME_FIELD: dict[type, str] = {
    CBCResult: "collected_at",
    VitalSign: "measured_at",
    Treatment: "given_at",
}


def event_time(event: Event) -> datetime:
    """When the event happened: a result's collection, a temperature's measurement, a dose."""
    moment: datetime = getattr(event, _TIME_FIELD[type(event)])
    return moment


def in_future(moment: datetime, received_at: datetime, tolerance: timedelta) -> bool:
    """True when ``moment`` is later than ``received_at`` + ``tolerance`` (both zoned)."""
    return moment > received_at + tolerance


def within_receipt(event: E, received_at: datetime) -> E:
    """``event`` with its time read as ``received_at`` when it is later (inside the tolerance:
    clock skew), else unchanged."""
    if event_time(event) <= received_at:
        return event
    return event.model_copy(update={_TIME_FIELD[type(event)]: received_at})


def screen_future(
    events: Sequence[E], received_at: datetime, tolerance: timedelta, time_field: str
) -> tuple[list[E], Rejected | None]:
    """The events dated no later than receipt + tolerance, and a rejection naming the others.

    A kept event dated after ``received_at`` (inside the tolerance) has its time read as
    ``received_at`` (``within_receipt``). ``time_field`` names the field the time came from
    (``collected_at``, ``OBR-7 collection time``, ...). The reason names positions and the
    field, never a time or any other value; the events that are not in the future are kept, so
    one bad specimen in a message does not take the others with it.
    """
    kept: list[E] = []
    late: list[int] = []
    for position, event in enumerate(events, start=1):
        if in_future(event_time(event), received_at, tolerance):
            late.append(position)
        else:
            kept.append(within_receipt(event, received_at))
    if not late:
        return kept, None
    minutes = f"{tolerance.total_seconds() / 60:g}"
    where = (
        ""
        if len(events) == 1
        else f"specimen {', '.join(map(str, late))} of {len(events)} (in message order): "
    )
    reason = (
        f"{where}{time_field} is later than the time the message was received "
        f"(tolerance {minutes} minutes for clock skew)"
    )
    return kept, Rejected(CODE, reason, "CollectedInFuture")
