"""Row-level failure through the worker's path (``ResultProcessor`` and ``replay_messages``):
an unusable row never costs the readable ones their alert, and is dead-lettered once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.metrics import Metrics
from monitor.settings import MonitorSettings
from monitor.stream.processor import Origin, ResultProcessor
from monitor.stream.replay import replay_messages

SETTINGS = MonitorSettings()
NOW = datetime(2026, 12, 1, tzinfo=UTC)

MSH = "MSH|^~\\&|XN|LAB|MON|HOSP|202611300800||ORU^R01|{id}|P|2.5.1"
PID = "PID|1||MRN9001^^^HOSP^MR||TEST^PAT||19600101|F"
OBR = "OBR|1|ORD{n}|SPC{n}|58410-2^CBC panel^LN|||2026113{day}0700-0500"

# (code, unit) of the readable rows a generated message may carry.
ROWS = {
    "wbc": ("6690-2^WBC^LN", "10*9/L"),
    "anc": ("751-8^NEU#^LN", "10*9/L"),
    "plt": ("777-3^PLT^LN", "10*3/uL"),
    "hgb": ("718-7^HGB^LN", "g/dL"),
}
CBC_CODES = [
    "6690-2^WBC^LN",
    "751-8^NEU#^LN",
    "770-8^NEU%^LN",
    "731-0^LYM#^LN",
    "777-3^PLT^LN",
    "718-7^HGB^LN",
    "4544-3^HCT^LN",
]


@dataclass(frozen=True)
class Msg:
    topic: str
    value: bytes


def oru(n: int, day: int, rows: list[str]) -> bytes:
    segments = [MSH.format(id=n), PID, OBR.format(n=n, day=day), *rows]
    return "\r".join(segments).encode()


def obx(set_id: int, code: str, value: str, unit: str, value_type: str = "NM") -> str:
    return f"OBX|{set_id}|{value_type}|{code}||{value}|{unit}|||||F"


def readable_rows(values: dict[str, float]) -> list[str]:
    return [
        obx(i, ROWS[name][0], f"{value:g}", ROWS[name][1])
        for i, (name, value) in enumerate(values.items(), start=1)
    ]


# Unusable rows as analyzers and interfaces send them: masks, empty values, words in an ST row,
# an unknown unit, a unit cut at an unescaped ^, a code/unit disagreement, a bad status.
def unreadable_row(kind: str, code: str) -> str:
    set_id = 90
    return {
        "mask": obx(set_id, code, "**.*", "10*9/L"),
        "dashes": obx(set_id, code, "----", "10*9/L"),
        "plus": obx(set_id, code, "+++", "10*9/L"),
        "empty": obx(set_id, code, "", "10*9/L"),
        "words": obx(set_id, code, "Clumped, see comment", "10*9/L", "ST"),
        "unit": obx(set_id, code, "2.0", "furlongs"),
        "truncated": f"OBX|{set_id}|NM|{code}||2.0|10^3/uL|||||F",
        "status": f"OBX|{set_id}|NM|{code}||2.0|10*9/L|||||Q",
        "negative": obx(set_id, code, "-3.0", "10*9/L"),
    }[kind]


def outcome(messages: list[bytes]) -> list[tuple[str, int, str]]:
    report = replay_messages([Msg("hl7v2", m) for m in messages], SETTINGS, clock=lambda: NOW)
    return sorted((a.condition, a.grade, a.event) for a in report.alerts)


cbc_values = st.fixed_dictionaries(
    {},
    optional={
        "wbc": st.floats(0.05, 12.0).map(lambda v: round(v, 2)),
        "plt": st.floats(1.0, 400.0).map(lambda v: round(v)),
        "hgb": st.floats(4.0, 16.0).map(lambda v: round(v, 1)),
    },
)


@settings(max_examples=60, deadline=None)
@given(
    first=cbc_values,
    second=cbc_values,
    anc_share=st.floats(0.0, 0.9),
    kind=st.sampled_from(
        ["mask", "dashes", "plus", "empty", "words", "unit", "truncated", "status", "negative"]
    ),
    code=st.sampled_from(CBC_CODES),
    where=st.integers(0, 10),
    in_second=st.booleans(),
)
def test_an_unreadable_row_never_removes_an_alert(
    first: dict[str, float],
    second: dict[str, float],
    anc_share: float,
    kind: str,
    code: str,
    where: int,
    in_second: bool,
) -> None:
    if "wbc" in second:
        second = {**second, "anc": round(second["wbc"] * anc_share, 2)}
    if not first or not second:
        return
    clean = [readable_rows(first), readable_rows(second)]
    dirty = [list(rows) for rows in clean]
    target = dirty[1 if in_second else 0]
    target.insert(where % (len(target) + 1), unreadable_row(kind, code))
    expected = outcome([oru(1, 0, clean[0]), oru(2, 1, clean[1])])
    got = outcome([oru(1, 0, dirty[0]), oru(2, 1, dirty[1])])
    assert set(expected) <= set(got)


# --- the worker: forwarded results, one dead letter, the metric ---------------------------------


def metric(processor: ResultProcessor, code: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(processor.metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == "monitor_results_invalid_total" and sample.labels == {"reason": code}:
                return sample.value
    raise AssertionError("not exported")


def test_hl7_message_with_a_masked_row_is_forwarded_and_dead_lettered_once() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    message = oru(
        7,
        0,
        [
            obx(1, "6690-2^WBC^LN", "0.3", "10*9/L"),
            obx(2, "770-8^NEU%^LN", "**.*", "%"),
            obx(3, "777-3^PLT^LN", "12", "10*3/uL"),
        ],
    )
    origin = Origin(SETTINGS.hl7v2_topic, 0, 11, None)
    forwarded, dead = processor.handle(message, None, origin)
    assert forwarded.topic == f"{SETTINGS.results_topic}.by-patient"
    assert set(json.loads(forwarded.value or b"")["components"]) == {"wbc", "platelets"}
    assert dead.topic == SETTINGS.dlq_topic
    assert dead.value == message
    headers = dict(dead.headers)
    assert headers["dlq.code"] == b"rows_rejected"
    assert headers["dlq.reason"] == (
        b"1 rows rejected, 2 read: OBR 1, OBX 2: OBX-5 is not a number (OBX-2 is NM)"
    )
    assert all(b"MRN9001" not in v and b"**.*" not in v for v in headers.values())
    assert metric(processor, "rows_rejected") == 1


def test_canonical_json_rows_are_dead_lettered_on_the_by_patient_hop_only() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    raw = json.dumps(
        {
            "result_id": "S1",
            "patient_id": "MRN9002",
            "collected_at": "2026-11-30T07:00:00-05:00",
            "components": {
                "platelets": {"value": 9, "unit": "10*9/L"},
                "neutrophils": {"value": 312, "unit": "10*3/uL"},
            },
        }
    ).encode()
    (repartitioned,) = processor.handle(raw, None, Origin(SETTINGS.results_topic, 0, 1, None))
    assert repartitioned.topic == f"{SETTINGS.results_topic}.by-patient"
    sends = processor.handle(
        repartitioned.value, repartitioned.key, Origin(repartitioned.topic, 0, 1, None)
    )
    alerts = [s for s in sends if s.topic == SETTINGS.alerts_topic]
    (dead,) = [s for s in sends if s.topic == SETTINGS.dlq_topic]
    assert [json.loads(a.value or b"")["condition"] for a in alerts] == ["thrombocytopenia"]
    assert dict(dead.headers)["dlq.code"] == b"implausible"
    assert b"components.neutrophils" in dict(dead.headers)["dlq.reason"]
    assert metric(processor, "implausible") == 1
    # Redelivered: nothing new, not even a second dead letter.
    again = processor.handle(
        repartitioned.value, repartitioned.key, Origin(repartitioned.topic, 0, 1, None)
    )
    assert again == []


def test_rejected_rows_and_a_future_specimen_give_two_dead_letters_once_each() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    today = oru(
        8,
        0,
        [
            obx(1, "6690-2^WBC^LN", "0.3", "10*9/L"),
            obx(2, "770-8^NEU%^LN", "----", "%"),
            obx(3, "777-3^PLT^LN", "12", "10*3/uL"),
        ],
    ).decode()
    future = "OBR|2|ORD99|SPC99|58410-2^CBC panel^LN|||209911300700-0500\r" + obx(
        4, "777-3^PLT^LN", "11", "10*3/uL"
    )
    message = f"{today}\r{future}".encode()
    sends = processor.handle(message, None, Origin(SETTINGS.hl7v2_topic, 0, 12, None))
    forwarded = [s for s in sends if s.topic == f"{SETTINGS.results_topic}.by-patient"]
    dead = [dict(s.headers) for s in sends if s.topic == SETTINGS.dlq_topic]
    # The readable rows of today's specimen go on; nothing of the future one does.
    assert [json.loads(s.value or b"")["result_id"] for s in forwarded] == ["SPC8"]
    assert [h["dlq.code"] for h in dead] == [b"rows_rejected", b"collected_in_future"]
    assert b"OBR 1, OBX 2" in dead[0]["dlq.reason"]
    assert b"specimen 2 of 2" in dead[1]["dlq.reason"]
    assert all(b"2099" not in v and b"MRN9001" not in v for h in dead for v in h.values())
    assert metric(processor, "rows_rejected") == 1
    assert metric(processor, "collected_in_future") == 1


def test_a_future_canonical_result_with_a_rejected_row_stops_at_the_source() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    raw = json.dumps(
        {
            "result_id": "S3",
            "patient_id": "MRN9003",
            "collected_at": "2099-11-30T07:00:00-05:00",
            "components": {
                "platelets": {"value": 9, "unit": "10*9/L"},
                "neutrophils": {"value": 0.4, "unit": "furlongs"},
            },
        }
    ).encode()
    sends = processor.handle(raw, None, Origin(SETTINGS.results_topic, 0, 2, None))
    # Not forwarded (it would be refused on the next hop anyway), so both faults are told here.
    assert {s.topic for s in sends} == {SETTINGS.dlq_topic}
    assert [dict(s.headers)["dlq.code"] for s in sends] == [
        b"rows_rejected",
        b"collected_in_future",
    ]
