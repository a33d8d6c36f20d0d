"""Raw message bytes in, a validated result or a classified rejection out.

A rejection carries a short code (a metric label), a reason that names fields but never values,
and the error class, which is what the dead-letter headers are made of. Nothing here may
repeat patient data: the original bytes travel as the dead letter's value, not in its headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from monitor.adapters.errors import AdapterError, RowRejection
from monitor.clinical.model import describe_validation_error, parse_result

T = TypeVar("T")

_ID_FIELDS = frozenset({"result_id", "patient_id"})


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str  # one of metrics.INVALID_REASONS
    reason: str
    error_class: str
    # The rows left out when only some rows were rejected (``rows.Parsed.rejected``); empty for
    # a message rejected whole. Not a header: ``reason`` already lists them.
    rows: tuple[RowRejection, ...] = ()


def classify(exc: ValidationError) -> str:
    """The dead-letter reason code of a validation error (its first error decides)."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds:
        return "not_json"
    if any(e["type"] == "missing" and e["loc"] and e["loc"][0] in _ID_FIELDS for e in errors):
        return "missing_id"
    if any("unknown unit" in e["msg"] for e in errors):
        return "unknown_unit"
    return "schema"


def validate_message(
    raw: bytes | None,
    max_bytes: int,
    parse: Callable[[bytes], T] = parse_result,  # type: ignore[assignment]
) -> T | Rejected:
    """``parse(raw)``, or why the message cannot be used: it is the dead letter's reason."""
    if raw is None or not raw.strip():
        return Rejected("not_json", "message: empty value", "EmptyMessage")
    if len(raw) > max_bytes:
        return Rejected(
            "oversize", f"message: {len(raw)} bytes exceeds the {max_bytes}-byte limit", "Oversize"
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected("not_utf8", "message: not UTF-8 text", "UnicodeDecodeError")
    try:
        return parse(raw)
    except ValidationError as exc:
        return Rejected(classify(exc), describe_validation_error(exc), type(exc).__name__)
    except AdapterError as exc:
        # Adapter messages name segments and elements, never values (see AdapterError).
        return Rejected("unmappable", str(exc), type(exc).__name__)


def dead_letter_headers(
    rejected: Rejected, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter: why, and where the original came from; no patient data."""
    return [
        ("dlq.reason", rejected.reason.encode()),
        ("dlq.code", rejected.code.encode()),
        ("dlq.error_class", rejected.error_class.encode()),
        ("dlq.source_topic", topic.encode()),
        ("dlq.source_partition", str(partition).encode()),
        ("dlq.source_offset", str(offset).encode()),
    ]
