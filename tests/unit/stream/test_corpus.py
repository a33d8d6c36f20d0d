"""Every message pair of tests/data/corpus/ (a message file and its ``.expected.json``) through
``replay_messages``, the worker's parsing and detection offline: the alerts raised and the
rejections (dead-letter code, row positions, causes) must be exactly the expected ones.

The format is documented in tests/data/corpus/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

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


@pytest.mark.parametrize(("message_file", "expected_file"), PAIRS, ids=[p.name for p, _ in PAIRS])
def test_corpus_message(message_file: Path, expected_file: Path) -> None:
    expected: dict[str, Any] = json.loads(expected_file.read_text())
    topic, fmt = _feed(message_file)
    settings = MonitorSettings(**expected.get("settings", {}))
    now = datetime.fromisoformat(expected.get("now", DEFAULT_NOW))
    messages = [_Message(topic, m) for _, m in split_messages(message_file.read_bytes(), fmt)]
    assert messages, f"{message_file.name}: no message"

    report = replay_messages(messages, settings, clock=lambda: now)

    alerts = sorted((a.condition, a.grade, a.event) for a in report.alerts)
    assert alerts == sorted(tuple(a) for a in expected["alerts"])
    rejections: dict[int, dict[str, Any]] = {}
    for number, rejected in report.rejected_messages:
        rejections[number] = {"code": rejected.code, "rows": [], "causes": []}
    rows_by_message: dict[int, list[tuple[str, str]]] = {}
    for number, row in report.row_rejections:
        rows_by_message.setdefault(number, []).append((row.where, row.cause))
    codes = dict(report.dead_letters)
    for number, rows in rows_by_message.items():
        kinds = {cause for _, cause in rows}
        code = "implausible" if kinds == {"implausible"} else "rows_rejected"
        rejections[number] = {
            "code": code,
            "rows": [w for w, _ in rows],
            "causes": [c for _, c in rows],
        }
    wanted = {
        r.get("message", 1): {
            "code": r["code"],
            "rows": r.get("rows", []),
            "causes": r.get("causes", [c for _, c in rows_by_message.get(r.get("message", 1), [])]),
        }
        for r in expected["rejections"]
    }
    assert rejections == wanted
    # Every rejection was counted under its dead-letter code, as the worker counts it.
    assert sum(codes.values()) == len(rejections)
