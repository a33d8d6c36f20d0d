"""The command line: offline demo and replay of a JSON-lines file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monitor.cli import main
from tests.builders import cbc


def test_replay_prints_alerts_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "results.jsonl"
    lines = [cbc("r1", 0, neutrophils=3.0), cbc("r2", 24, neutrophils=0.4)]
    path.write_text("\n".join(r.model_dump_json() for r in lines) + "\n")
    assert main(["replay", str(path)]) == 0
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["condition"], a["event"], a["grade"]) for a in alerts] == [("neutropenia", "new", 4)]


def test_replay_reports_a_bad_line_by_number_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "results.jsonl"
    good = cbc("r1", 0, neutrophils=3.0, patient_id="MRN-SECRET-1").model_dump_json()
    bad = json.loads(good)
    bad["components"]["neutrophils"]["unit"] = "furlongs"
    path.write_text(good + "\n" + json.dumps(bad) + "\n")
    assert main(["replay", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:" in err
    assert "unknown unit" in err
    assert "MRN-SECRET-1" not in err


def test_replay_of_a_missing_file_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/results.jsonl"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_offline_demo_prints_alerts_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--offline", "--patients", "6", "--days", "25"]) == 0
    out = capsys.readouterr().out
    assert "neutropenia" in out
    assert "results:" in out
    assert "dead letter" in out
    assert "hysteresis on (RCV)" in out


def test_offline_noisy_demo_shows_what_the_hysteresis_held_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--offline", "--noisy", "--patients", "10", "--days", "21"]) == 0
    effect = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.search(
        r"([\d,]+) alerts and ([\d,]+) pages, against ([\d,]+) alerts and ([\d,]+) pages .*; "
        r"([\d,]+) results held back",
        effect,
    )
    assert match is not None
    alerts, pages, every_alerts, every_pages, held = (
        int(g.replace(",", "")) for g in match.groups()
    )
    assert alerts < every_alerts
    assert pages <= every_pages
    assert held > 0


def test_offline_demo_every_crossing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--offline", "--noisy", "--every-crossing", "--patients", "5"]) == 0
    assert "hysteresis off (MONITOR_HYSTERESIS=false)" in capsys.readouterr().out


def test_split_messages_by_format() -> None:
    from monitor.cli import split_messages

    hl7 = b"MSH|^~\\&|A\rPID|1\r\nMSH|^~\\&|B\nPID|2\n"
    assert [p for p, _ in split_messages(hl7, "hl7v2")] == ["message 1", "message 2"]
    assert split_messages(hl7, "hl7v2")[1][1].startswith(b"MSH|^~\\&|B")
    bundle = b'{\n "resourceType": "Bundle",\n "entry": []\n}\n'
    assert split_messages(bundle, "fhir") == [("document", bundle)]
    lines = b'{"resourceType": "Observation"}\n\n{"resourceType": "Observation"}\n'
    assert [p for p, _ in split_messages(lines, "fhir")] == ["line 1", "line 3"]


@pytest.mark.parametrize(
    ("fmt", "content", "position"),
    [
        (
            "hl7v2",
            b"MSH|^~\\&|LAB|X|MON|Y|20261110080000+0000||ORU^R01|1|P|2.5.1\rPID|1\r",
            "message 1",
        ),
        ("fhir", b'{"resourceType": "Patient", "id": "x"}\n', "document"),
        ("vitals", b'{"observation_id": "v"}\n', "line 1"),
        ("treatments", b'{"event_id": "e", "patient_id": "MRN-SECRET-1", "kind": "x"}\n', "line 1"),
    ],
)
def test_send_reports_a_bad_entry_by_position_and_sends_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    content: bytes,
    position: str,
) -> None:
    # No broker listens there: a bad file must fail before any connection is tried.
    monkeypatch.setenv("MONITOR_BROKER_URL", "kafka://127.0.0.1:9")
    path = tmp_path / "input"
    path.write_bytes(content)
    assert main(["send", "--format", fmt, str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: {position}:" in err
    assert "nothing sent" in err
    assert "MRN-SECRET-1" not in err
