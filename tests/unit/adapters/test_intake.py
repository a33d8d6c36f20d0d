"""Raw bytes to a result or a classified, sanitized rejection."""

from __future__ import annotations

import json

import pytest

from monitor.adapters.intake import Rejected, dead_letter_headers, validate_message
from monitor.clinical.model import CBCResult
from monitor.metrics import INVALID_REASONS

SECRET = "MRN-SECRET-7731"
GOOD = {
    "result_id": "LAB-1",
    "patient_id": SECRET,
    "collected_at": "2026-11-20T08:15:00Z",
    "components": {"neutrophils": {"value": 0.8, "unit": "10*9/L"}},
}


def encode(**changes: object) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def test_valid_message_gives_a_result() -> None:
    assert isinstance(validate_message(encode(), 65536), CBCResult)


@pytest.mark.parametrize(
    ("raw", "code", "mentions"),
    [
        (b"{not json", "not_json", "Invalid JSON"),
        (b"", "not_json", "empty"),
        (None, "not_json", "empty"),
        (b"[1, 2]", "schema", "object"),
        (b"\xff\xfe{}", "not_utf8", "UTF-8"),
        (encode(result_id=None), "missing_id", "result_id"),
        (encode(patient_id=None), "missing_id", "patient_id"),
        (encode(components={"wbc": {"value": 1.0, "unit": "mg/dL"}}), "unknown_unit", "wbc"),
        (encode(components={"wbc": {"value": -1.0, "unit": "K/uL"}}), "schema", "components.wbc"),
        (encode(collected_at="2026-11-20T08:15:00"), "schema", "collected_at"),
        (encode(components={"troponin": {"value": 1.0, "unit": "ng/L"}}), "schema", "troponin"),
    ],
)
def test_rejections_are_classified_and_name_the_field(
    raw: bytes | None, code: str, mentions: str
) -> None:
    rejected = validate_message(raw, 65536)
    assert isinstance(rejected, Rejected)
    assert rejected.code == code
    assert code in INVALID_REASONS
    assert mentions in rejected.reason
    assert SECRET not in rejected.reason


def test_oversize_is_rejected_before_parsing() -> None:
    raw = encode(context={"ward": "x" * 70_000})
    rejected = validate_message(raw, 65536)
    assert isinstance(rejected, Rejected)
    assert rejected.code == "oversize"


def test_dead_letter_headers_carry_reason_and_origin_but_no_patient_data() -> None:
    rejected = validate_message(encode(components={"wbc": {"value": 1.0, "unit": "bad"}}), 65536)
    assert isinstance(rejected, Rejected)
    headers = dict(dead_letter_headers(rejected, "lab.cbc.results", 3, 1234))
    assert headers["dlq.code"] == b"unknown_unit"
    assert headers["dlq.source_topic"] == b"lab.cbc.results"
    assert headers["dlq.source_partition"] == b"3"
    assert headers["dlq.source_offset"] == b"1234"
    assert headers["dlq.error_class"] == b"ValidationError"
    assert all(SECRET.encode() not in value for value in headers.values())
