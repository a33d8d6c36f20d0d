"""The command line: offline demo, and the replay message tester (JSON, HL7 v2, FHIR)."""

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
    captured = capsys.readouterr()
    # Issue 9 sets the tester's format; the good lines are still replayed (it used to replay
    # nothing when any line was bad). A component with an unknown unit is a rejected row (issue
    # 9's row-level failure), reported as "message N row K rejected (CODE): REASON".
    assert "message 2 row components.neutrophils rejected (unit): unknown unit" in captured.err
    assert "MRN-SECRET-1" not in captured.err
    assert captured.out == ""  # the good line raises no alert (ANC 3.0)


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


# --- the offline message tester: replay --format json|hl7v2|fhir ---------------------------

HL7_FILE = "\r\n".join(
    [
        "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20250310091500+0100||ORU^R01|C1|P|2.5.1",
        "PID|1||MRN-SECRET-3^^^HOSP^MR||DOE^JOHN||19600101|Male",
        "OBR|1|ORD-1|SP-1|57021-8^CBC W Auto Differential^LN|||{obr7}",
        "OBX|1|NM|751-8^Neutrophils^LN||0.4|10*9/L|1.8-7.7|LL|||F",
        "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20250310101500+0100||ORU^R01|C2|P|2.5.1",
        "PID|1||MRN-SECRET-3^^^HOSP^MR||DOE^JOHN||19600101|Male",
        "OBR|1|ORD-2|SP-2|57021-8^CBC W Auto Differential^LN|||209903110815+0100",
        "OBX|1|NM|751-8^Neutrophils^LN||2.4|10*9/L|1.8-7.7||||F",
        "",
    ]
)


def run_tester(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, text: str
) -> tuple[int, list[dict[str, object]], list[str]]:
    path = tmp_path / f"messages.{fmt}"
    path.write_text(text)
    status = main(["replay", "--format", fmt, str(path)])
    captured = capsys.readouterr()
    alerts = [json.loads(line) for line in captured.out.splitlines()]
    return status, alerts, captured.err.splitlines()


def test_tester_reads_hl7_one_message_per_msh_and_reports_the_rejected_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, alerts, err = run_tester(
        tmp_path, capsys, "hl7v2", HL7_FILE.format(obr7="202503100815+0100")
    )
    assert status == 1
    assert [(a["result_id"], a["condition"], a["event"], a["grade"]) for a in alerts] == [
        ("SP-1", "neutropenia", "new", 4)
    ]
    assert err[0].startswith("message 2 rejected (collected_in_future): ")
    assert err[-1] == "2 messages, 1 alerts, 1 rejected"
    assert not any("MRN-SECRET-3" in line for line in err)


def test_tester_reports_a_masked_row_and_still_prints_the_readable_rows_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masked = "\r\n".join(
        [
            "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20250310091500+0100||ORU^R01|C3|P|2.5.1",
            "PID|1||MRN-SECRET-4^^^HOSP^MR||DOE^JANE||19600101|F",
            "OBR|1|ORD-3|SP-3|57021-8^CBC W Auto Differential^LN|||202503100815+0100",
            "OBX|1|NM|6690-2^WBC^LN||0.3|10*9/L|4.0-10.0|LL|||F",
            "OBX|2|NM|770-8^NEU%^LN||**.*|%|50-70||||F",
            "OBX|3|NM|777-3^PLT^LN||12|10*3/uL|150-400|LL|||F",
            "",
        ]
    )
    status, alerts, err = run_tester(tmp_path, capsys, "hl7v2", masked)
    assert status == 1
    assert sorted((a["condition"], a["grade"]) for a in alerts) == [
        ("leukopenia", 4),
        ("thrombocytopenia", 4),
    ]
    assert err[0].startswith("message 1 row OBR 1, OBX 2 rejected (no_value): OBX-5 is not")
    assert err[-1] == "1 messages, 2 alerts, 1 rejected"
    assert not any("MRN-SECRET-4" in line or "**.*" in line for line in err)


def test_tester_exits_0_when_every_message_was_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = "\r\n".join(HL7_FILE.split("\r\n")[:4]) + "\r\n"
    status, alerts, err = run_tester(
        tmp_path, capsys, "hl7v2", first.format(obr7="202503100815+0100")
    )
    assert status == 0
    assert len(alerts) == 1
    assert err == ["1 messages, 1 alerts, 0 rejected"]


def test_tester_honours_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = "\r\n".join(HL7_FILE.split("\r\n")[:4]) + "\r\n"
    no_zone = first.format(obr7="202503100815")
    status, _, err = run_tester(tmp_path, capsys, "hl7v2", no_zone)
    assert status == 1
    assert "(unmappable): " in err[0]
    assert "no time zone offset" in err[0]
    monkeypatch.setenv("MONITOR_HL7_DEFAULT_TZ", "Europe/Paris")
    monkeypatch.setenv("MONITOR_CTCAE_VERSION", "6.0")
    status, alerts, _ = run_tester(tmp_path, capsys, "hl7v2", no_zone)
    assert status == 0
    assert [(a["ctcae_version"], a["grade"], a["collected_at"]) for a in alerts] == [
        ("6.0", 3, "2025-03-10T08:15:00+01:00")  # ANC 0.4 is grade 3 in CTCAE v6.0
    ]


def test_tester_reads_a_fhir_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).parents[1] / "data" / "fhir" / "message_bundle.json"
    status, alerts, err = run_tester(tmp_path, capsys, "fhir", data.read_text())
    assert status == 0
    assert alerts
    assert {a["result_id"] for a in alerts} == {alerts[0]["result_id"]}
    assert err[-1] == f"1 messages, {len(alerts)} alerts, 0 rejected"


def test_tester_reads_fhir_json_lines_and_numbers_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(__file__).parents[1] / "data" / "fhir" / "uscore_neutrophils.json"
    good = json.dumps(json.loads(data.read_text()))
    status, _, err = run_tester(tmp_path, capsys, "fhir", good + '\n{"resourceType": "Patient"}\n')
    assert status == 1
    assert err[0].startswith("message 2 rejected (unmappable): ")


def test_tester_reads_every_message_of_a_framed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A BOM and MLLP framing used to hide the first message (BOM) or crash the splitter (MLLP).
    first = "\r".join(HL7_FILE.split("\r\n")[:4]).format(obr7="202503100815+0100")
    second = first.replace("C1|", "C9|").replace("SP-1", "SP-9").replace("|0.4|", "|0.3|")
    framed = b"\xef\xbb\xbf\x0b" + first.encode() + b"\r\x1c\r\x0b" + second.encode() + b"\r\x1c\r"
    path = tmp_path / "framed.hl7"
    path.write_bytes(framed)
    assert main(["replay", "--format", "hl7v2", str(path)]) == 0
    captured = capsys.readouterr()
    assert [json.loads(line)["result_id"] for line in captured.out.splitlines()] == ["SP-1"]
    assert captured.err.splitlines()[-1] == "2 messages, 1 alerts, 0 rejected"


@pytest.mark.parametrize("content", [b"", b"hello\nworld\n", bytes(range(256))])
def test_tester_refuses_a_file_without_msh_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    path = tmp_path / "not.hl7"
    path.write_bytes(content)
    assert main(["replay", "--format", "hl7v2", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"cbc-monitor: {path}: not HL7 v2: no MSH segment in the file"
    ]


def test_send_reports_a_file_without_msh_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_BROKER_URL", "kafka://127.0.0.1:9")
    path = tmp_path / "not.hl7"
    path.write_bytes(b"hello world\n")
    assert main(["send", "--format", "hl7v2", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}: not HL7 v2: no MSH segment in the file",
        f"cbc-monitor: 1 invalid entries in {path}; nothing sent",
    ]
