"""Reading the simulated feed back: the simulator's own reference reading of the format.

``check_message`` says why bytes are not a valid canonical CBC result (the reasons for the
deliberately malformed messages are the names in ``MALFORMED_VARIANTS``), independently of the
monitor's parser, so the two can be checked against each other. ``clean_results`` keeps the
authoritative version of each result and ``summary`` counts messages by kind and feed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from monitor.sim.labs import ALLOWED_UNITS, COUNT_ANALYTES
from monitor.sim.messages import LAB_TOPICS, MAX_MESSAGE_BYTES, TOPICS, SimMessage

__all__ = ["check_message", "clean_results", "summary"]

_STATUSES: Final = frozenset({"final", "corrected", "preliminary"})
_SEXES: Final = frozenset({"female", "male"})


def _problem_with_timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return "bad_timestamp"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return "bad_timestamp"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "naive_timestamp"
    return None


def _problem_with_components(components: Any) -> str | None:
    if not isinstance(components, dict):
        return "bad_components"
    for analyte, component in components.items():
        if analyte not in ALLOWED_UNITS:
            return "unknown_analyte"
        if not isinstance(component, dict) or not set(component) <= {"value", "unit", "lln"}:
            return "bad_component"
        value = component.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "bad_value"
        if not math.isfinite(value):
            return "bad_value"
        if value < 0:
            return "negative_count" if analyte in COUNT_ANALYTES else "negative_value"
        if component.get("unit") not in ALLOWED_UNITS[analyte]:
            return "unknown_unit"
        lln = component.get("lln")
        if lln is not None and (
            isinstance(lln, bool)
            or not isinstance(lln, int | float)
            or not math.isfinite(lln)
            or lln < 0
        ):
            return "bad_lln"
    return None


def check_message(value: bytes) -> str | None:
    """Why ``value`` is not a valid canonical CBC result (a short reason), or None if it is.

    This is the simulator's own reference reading of the format, independent of the monitor's
    parser, so the two can be checked against each other. The reasons for the deliberately
    malformed messages are the names in ``MALFORMED_VARIANTS``.
    """
    if len(value) > MAX_MESSAGE_BYTES:
        return "oversize"
    try:
        obj = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not_json"
    if not isinstance(obj, dict):
        return "not_object"
    for name in ("result_id", "patient_id"):
        ident = obj.get(name)
        if not isinstance(ident, str) or not ident.strip():
            return f"missing_{name}"
    problem = _problem_with_timestamp(obj.get("collected_at"))
    if problem is not None:
        return problem
    if obj.get("status", "final") not in _STATUSES:
        return "bad_status"
    sex = obj.get("sex")
    if sex is not None and sex not in _SEXES:
        return "bad_sex"
    problem = _problem_with_components(obj.get("components", {}))
    if problem is not None:
        return problem
    context = obj.get("context", {})
    if not isinstance(context, dict):
        return "bad_context"
    if context.get("last_chemo_at") is not None:
        return _problem_with_timestamp(context["last_chemo_at"])
    return None


_STATUS_RANK: Final = {"preliminary": 0, "final": 1, "corrected": 2}


def clean_results(messages: Iterable[SimMessage]) -> list[dict[str, Any]]:
    """The valid results, one per result id, in publication order.

    Each result id is represented by its most authoritative version (corrected over final over
    preliminary; the later of two equal ranks), placed where that version was first published.
    A redelivered stale preliminary therefore never replaces the final. HL7 v2 and FHIR messages
    count by the canonical result they encode (``SimMessage.result_json``); treatments, vitals
    and malformed messages are skipped. A lab message not marked malformed that fails
    ``check_message`` raises ValueError, because that is a bug in the simulator rather than noise
    it meant to make.
    """
    chosen: dict[str, tuple[int, int, dict[str, Any]]] = {}  # id -> (rank, position, result)
    for position, message in enumerate(messages):
        if message.kind == "malformed" or message.topic not in LAB_TOPICS:
            continue
        payload = message.result_json
        problem = "no_canonical_result" if payload is None else check_message(payload)
        if problem is not None or payload is None:
            raise ValueError(f"message {position} ({message.kind}) is invalid: {problem}")
        result: dict[str, Any] = json.loads(payload)
        rank = _STATUS_RANK[result.get("status", "final")]
        previous = chosen.get(result["result_id"])
        if (
            previous is None
            or rank > previous[0]
            or (rank == previous[0] and result != previous[2])
        ):
            chosen[result["result_id"]] = (rank, position, result)
    return [result for _, _, result in sorted(chosen.values(), key=lambda entry: entry[1])]


def summary(messages: Sequence[SimMessage]) -> dict[str, int]:
    """Counts by message kind and by feed (``<topic>_messages``), plus distinct patients and
    distinct valid results."""
    counts: dict[str, int] = {"messages": len(messages)}
    for kind in ("result", "redelivery", "late", "malformed"):
        counts[kind] = sum(1 for m in messages if m.kind == kind)
    for topic in TOPICS:
        counts[f"{topic}_messages"] = sum(1 for m in messages if m.topic == topic)
    results = clean_results(messages)
    counts["patients"] = len({r["patient_id"] for r in results})
    counts["results"] = len(results)
    return counts
