"""Corpus pairs for future-dated and date-only times, spelled-out sex and retractions.

Each ``tests/data/corpus/<name>.<ext>`` holds messages in the shapes labs send (one file, one
or more messages: HL7 one per MSH, FHIR a document or JSON lines, canonical JSON lines) and
``<name>.expected.json`` the outcome: ``{"format", "alerts": [{"condition", "grade",
"event"}...], "rejections": [{"code", "rows"}...]}``, both in order. They run through the
offline replay with today's clock, as ``cbc-monitor replay --format F FILE`` would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitor.adapters.intake import Rejected
from monitor.cli import split_messages
from monitor.settings import MonitorSettings
from monitor.stream.replay import replay_messages

CORPUS = Path(__file__).parents[2] / "data" / "corpus"
NAMES = (
    "future_dated_then_real",
    "date_only_time",
    "date_only_collected_at",
    "male_spelled_out",
    "obx11_w_after_final",
    "fhir_entered_in_error",
)
FEED = {"json": "results", "hl7v2": "hl7v2", "fhir": "fhir"}


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes


def message_file(name: str) -> Path:
    (path,) = [p for p in CORPUS.glob(f"{name}.*") if not p.name.endswith(".expected.json")]
    return path


@pytest.mark.parametrize("name", NAMES)
def test_corpus_pair(name: str) -> None:
    expected: dict[str, Any] = json.loads((CORPUS / f"{name}.expected.json").read_text())
    fmt = expected["format"]
    data = message_file(name).read_bytes()
    messages = [Message(FEED[fmt], value) for _, value in split_messages(data, fmt)]
    rejections: list[Rejected] = []
    report = replay_messages(
        messages, MonitorSettings(), on_reject=lambda _, r: rejections.append(r)
    )
    alerts = [{"condition": a.condition, "grade": a.grade, "event": a.event} for a in report.alerts]
    assert alerts == expected["alerts"]
    assert [{"code": r.code, "rows": []} for r in rejections] == expected["rejections"]
    for rejected in rejections:  # reasons name fields, never values
        assert "TESTPATIENT" not in rejected.reason
        assert "2099" not in rejected.reason


def test_every_pair_named_here_exists() -> None:
    for name in NAMES:
        assert (CORPUS / f"{name}.expected.json").is_file()
        assert message_file(name).stat().st_size > 0
