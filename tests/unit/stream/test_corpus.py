"""Every message pair of tests/data/corpus/ (a message file and its ``.expected.json``) through
``replay_messages``, the worker's parsing and detection offline: the alerts raised and the
dead letters (code, row positions, causes) must be exactly the expected ones.

One runner for every pair (row-level failure, value forms, units, plausibility, time policy,
sex spellings, retraction); the format is documented in tests/data/corpus/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor.adapters.intake import Rejected
from monitor.cli import split_messages
from monitor.settings import MonitorSettings
from monitor.stream.replay import replay_messages

CORPUS = Path(__file__).parents[2] / "data" / "corpus"
DEFAULT_NOW = "2026-12-01T00:00:00+00:00"

# Message file suffix -> (logical feed of replay_messages, split_messages format).
_FEEDS = {".hl7": ("hl7v2", "hl7v2"), ".fhir.json": ("fhir", "fhir"), ".json": ("results", "json")}


@dataclass(frozen=True)
class _Message:
    topic: str
    value: bytes


def _feed(path: Path) -> tuple[str, str]:
    for suffix, feed in _FEEDS.items():  # ".fhir.json" before ".json"
        if path.name.endswith(suffix):
            return feed
    raise AssertionError(f"{path.name}: no feed for this file name")


def _pairs() -> list[tuple[Path, Path]]:
    pairs = []
    for expected in sorted(CORPUS.glob("*.expected.json")):
        stem = expected.name.removesuffix(".expected.json")
        found = [
            p
            for p in CORPUS.iterdir()
            if p.name.startswith(f"{stem}.") and p != expected and not p.name.endswith(".md")
        ]
        assert len(found) == 1, f"{expected.name}: expected one message file, found {found}"
        pairs.append((found[0], expected))
    return pairs


PAIRS = _pairs()


def test_corpus_is_complete() -> None:
    expected = {p.name for _, p in PAIRS}
    messages = {p.name for p, _ in PAIRS}
    others = {p.name for p in CORPUS.iterdir()} - expected - messages - {"README.md"}
    assert not others, f"message files without an .expected.json: {sorted(others)}"
    assert len(PAIRS) >= 10


def _dead_letter(position: int, rejected: Rejected) -> dict[str, Any]:
    return {
        "message": position,
        "code": rejected.code,
        "rows": [r.where for r in rejected.rows],
        "causes": [r.cause for r in rejected.rows],
    }


@pytest.mark.parametrize(("message_file", "expected_file"), PAIRS, ids=[p.name for p, _ in PAIRS])
def test_corpus_message(message_file: Path, expected_file: Path) -> None:
    expected: dict[str, Any] = json.loads(expected_file.read_text())
    topic, fmt = _feed(message_file)
    settings = MonitorSettings(**expected.get("settings", {}))
    now = datetime.fromisoformat(expected.get("now", DEFAULT_NOW))
    messages = [_Message(topic, m) for _, m in split_messages(message_file.read_bytes(), fmt)]
    assert messages, f"{message_file.name}: no message"
    dead_letters: list[tuple[int, Rejected]] = []

    report = replay_messages(
        messages, settings, clock=lambda: now, on_reject=lambda n, r: dead_letters.append((n, r))
    )

    alerts = [(a.condition, a.grade, a.event) for a in report.alerts]
    wanted_alerts = [tuple(a) for a in expected["alerts"]]
    if expected.get("ordered", False):
        assert alerts == wanted_alerts
    else:
        assert sorted(alerts) == sorted(wanted_alerts)
    got = [_dead_letter(n, r) for n, r in dead_letters]
    wanted = [
        {
            "message": r.get("message", 1),
            "code": r["code"],
            "rows": r.get("rows", []),
            "causes": r.get("causes"),
        }
        for r in expected["rejections"]
    ]
    assert len(got) == len(wanted), got
    for seen, entry in zip(got, wanted, strict=True):
        if entry["causes"] is None:  # not given: not checked
            entry["causes"] = seen["causes"]
    assert got == wanted
    # Every dead letter was counted under its code, as the worker counts it.
    assert sum(report.dead_letters.values()) == len(dead_letters)
    # Reasons name fields, rows and analytes, never the message's values.
    reasons = [r.reason for _, r in dead_letters] + [
        row.reason for _, r in dead_letters for row in r.rows
    ]
    for text in expected.get("not_in_reasons", []):
        assert not any(text in reason for reason in reasons), text
