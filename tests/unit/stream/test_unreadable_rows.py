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
from monitor.stream.processor import Origin, ResultProcessor, Send
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


def canonical(result_id: str, patient: str, **components: tuple[float, str]) -> bytes:
    return json.dumps(
        {
            "result_id": result_id,
            "patient_id": patient,
            "collected_at": "2026-11-30T07:00:00-05:00",
            "components": {a: {"value": v, "unit": u} for a, (v, u) in components.items()},
        }
    ).encode()


def dead_letters(sends: list[Send]) -> list[dict[str, bytes]]:
    return [dict(s.headers) for s in sends if s.topic == SETTINGS.dlq_topic]


def test_canonical_json_rows_are_dead_lettered_where_the_message_entered_only() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    raw = canonical("S1", "MRN9002", platelets=(9, "10*9/L"), neutrophils=(312, "10*3/uL"))
    repartitioned, dead = processor.handle(raw, None, Origin(SETTINGS.results_topic, 0, 1, None))
    # Told on the input topic, with the message as sent: where an analyst will look for it.
    assert dead.topic == SETTINGS.dlq_topic
    assert dead.value == raw
    headers = dict(dead.headers)
    assert headers["dlq.code"] == b"implausible"
    assert headers["dlq.source_topic"] == SETTINGS.results_topic.encode()
    assert headers["dlq.source_offset"] == b"1"
    assert b"components.neutrophils" in headers["dlq.reason"]
    assert all(b"312" not in v and b"MRN9002" not in v for v in headers.values())
    # Forwarded with its readable component only, marked partial, like a lab message's result.
    assert repartitioned.topic == f"{SETTINGS.results_topic}.by-patient"
    forwarded = json.loads(repartitioned.value or b"")
    assert set(forwarded["components"]) == {"platelets"}
    assert forwarded["partial"] is True
    sends = processor.handle(
        repartitioned.value, repartitioned.key, Origin(repartitioned.topic, 0, 1, None)
    )
    alerts = [s for s in sends if s.topic == SETTINGS.alerts_topic]
    assert [json.loads(a.value or b"")["condition"] for a in alerts] == ["thrombocytopenia"]
    assert dead_letters(sends) == []  # not a second time on the by-patient hop
    assert metric(processor, "implausible") == 1
    # Redelivered on the by-patient hop: nothing new, not even a dead letter.
    again = processor.handle(
        repartitioned.value, repartitioned.key, Origin(repartitioned.topic, 0, 1, None)
    )
    assert again == []


def test_every_copy_of_a_canonical_message_with_a_bad_row_is_dead_lettered_once() -> None:
    # The simulator's broken copies: the panel as first sent, then the same specimen with one
    # unit unknown. Its readable rows change nothing (a duplicate), and it is still dead-lettered,
    # whichever way it reaches the detector; replay_messages counts exactly those dead letters.
    clean = canonical("S2", "MRN9004", platelets=(9, "10*9/L"), wbc=(0.8, "10*9/L"))
    broken = canonical("S2", "MRN9004", platelets=(9, "10*9/L"), wbc=(0.8, "kU/L"))
    key = b"MRN9004"
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    first = processor.handle(clean, key, Origin(SETTINGS.results_topic, 0, 1, None))
    assert {
        json.loads(s.value or b"")["condition"] for s in first if s.topic == SETTINGS.alerts_topic
    } == {"thrombocytopenia", "leukopenia"}
    letters = []
    for offset, message_key in ((2, key), (3, key), (4, None)):
        sends = processor.handle(
            broken, message_key, Origin(SETTINGS.results_topic, 0, offset, None)
        )
        hops = [s for s in sends if s.topic == f"{SETTINGS.results_topic}.by-patient"]
        for hop in hops:  # not keyed by patient: the forwarded copy is a duplicate, and clean
            sends += processor.handle(hop.value, hop.key, Origin(hop.topic, 0, offset, None))
        assert [s for s in sends if s.topic == SETTINGS.alerts_topic] == []
        letters += dead_letters(sends)
    assert [h["dlq.source_offset"] for h in letters] == [b"2", b"3", b"4"]
    assert {h["dlq.code"] for h in letters} == {b"rows_rejected"}
    assert {h["dlq.source_topic"] for h in letters} == {SETTINGS.results_topic.encode()}
    assert all(b"kU/L" not in v for h in letters for v in h.values())
    assert metric(processor, "rows_rejected") == 3
    report = replay_messages(
        [Msg("results", m) for m in (clean, broken, broken, broken)], SETTINGS, clock=lambda: NOW
    )
    assert report.dead_letters == {"rows_rejected": 3}
    assert len(report.alerts) == 2


def test_a_canonical_message_with_a_bad_row_is_the_same_result_however_it_is_routed() -> None:
    # Keyed by patient it is applied on its input topic; keyed otherwise, on the by-patient hop.
    # Both ways it is known by the same content, so the other copy is a duplicate.
    broken = canonical("S5", "MRN9005", platelets=(9, "10*9/L"), wbc=(0.8, "furlongs"))
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)
    direct = processor.handle(broken, b"MRN9005", Origin(SETTINGS.results_topic, 0, 1, None))
    assert len([s for s in direct if s.topic == SETTINGS.alerts_topic]) == 1
    (hop, _dead) = processor.handle(broken, None, Origin(SETTINGS.results_topic, 0, 2, None))
    assert processor.handle(hop.value, hop.key, Origin(hop.topic, 0, 2, None)) == []


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
