"""Specimens rendered as the messages their labs send: canonical JSON, broken JSON, HL7 v2, FHIR.

``render`` writes a specimen as the canonical CBC JSON result (the shape
``monitor.clinical.model.CBCResult`` validates) the way the patient's lab reports it: the lab's
units and rounding, its lower limits when it sends them, percent differentials instead of the
absolute neutrophil count for some results, collection time on the lab's clock. ``break_result``
turns a valid result into one of the ``MALFORMED_VARIANTS``. ``Encoder`` drafts a result in the
format of the patient's lab: the canonical JSON itself, or HL7 v2 ORU^R01 and FHIR R4 through
``monitor.sim.hl7v2_encoding`` and ``monitor.sim.fhir_encoding``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from monitor.sim.fhir_encoding import to_fhir
from monitor.sim.hl7v2_encoding import to_hl7v2
from monitor.sim.labs import LAB_LLN, in_unit
from monitor.sim.messages import MAX_MESSAGE_BYTES, Draft, MessageKind, Topic
from monitor.sim.specimens import Specimen

__all__ = [
    "MALFORMED_VARIANTS",
    "Encoder",
    "break_result",
    "encode_json",
    "render",
    "timestamp",
]

# Each name is both the way a malformed message is built and the reason check_message gives for it.
MALFORMED_VARIANTS: Final[tuple[str, ...]] = (
    "not_json",
    "not_object",
    "missing_result_id",
    "missing_patient_id",
    "unknown_unit",
    "negative_count",
    "naive_timestamp",
    "unknown_analyte",
    "oversize",
)

_DAY: Final = timedelta(days=1)
_ANALYTE_ORDER: Final = (
    "hemoglobin",
    "wbc",
    "neutrophils",
    "lymphocytes",
    "platelets",
    "rbc",
    "neutrophils_pct",
    "bands_pct",
    "lymphocytes_pct",
    "mcv",
)


def timestamp(start: datetime, day: float, offset_minutes: int) -> str:
    zone = timezone(timedelta(minutes=offset_minutes))
    moment = (start + day * _DAY).astimezone(zone).replace(microsecond=0)
    text = moment.isoformat()
    return text[:-6] + "Z" if offset_minutes == 0 else text


def render(
    start: datetime,
    s: Specimen,
    status: str = "final",
    overrides: dict[str, float] | None = None,
    analytes: Sequence[str] | None = None,
) -> dict[str, Any]:
    p = s.patient
    values = s.values | (overrides or {})
    if analytes is None:
        if s.panel != "full":
            analytes = (s.panel,)
        else:
            wanted = set(_ANALYTE_ORDER)
            if s.derived_anc:
                wanted.discard("neutrophils")
            elif not p.lab.sends_percentages:
                wanted -= {"neutrophils_pct", "bands_pct", "lymphocytes_pct"}
            analytes = [a for a in _ANALYTE_ORDER if a in wanted]
    components: dict[str, dict[str, Any]] = {}
    for analyte in analytes:
        unit = p.lab.unit(analyte)
        component: dict[str, Any] = {
            "value": in_unit(analyte, values[analyte], unit),
            "unit": unit,
        }
        if p.lab.sends_lln and analyte in LAB_LLN:
            lln = LAB_LLN[analyte][p.reported_sex or "female"]
            component["lln"] = in_unit(analyte, lln, unit)
        components[analyte] = component
    context: dict[str, Any] = {"ward": p.ward}
    if s.last_dose_day is not None:
        context["last_chemo_at"] = timestamp(start, s.last_dose_day, 0)
    return {
        "result_id": s.result_id,
        "patient_id": p.patient_id,
        "collected_at": timestamp(start, s.day, p.lab.utc_offset_minutes),
        "status": status,
        "sex": p.reported_sex,
        "components": components,
        "context": context,
    }


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


def break_result(variant: str, obj: dict[str, Any], rng: random.Random) -> tuple[bytes, bool]:
    """Bytes for one malformed variant built from a valid result; also whether to drop the key."""
    obj = json.loads(json.dumps(obj))  # a deep copy we may mutate
    components: dict[str, dict[str, Any]] = obj["components"]
    if variant == "not_json":
        good = encode_json(obj)
        return good[: rng.randint(10, len(good) // 2)], False  # a truncated write
    if variant == "not_object":
        return encode_json([obj]), False
    if variant == "missing_result_id":
        del obj["result_id"]
    elif variant == "missing_patient_id":
        del obj["patient_id"]
        return encode_json(obj), True
    elif variant == "unknown_unit":
        components[next(iter(components))]["unit"] = "kU/L"
    elif variant == "negative_count":
        count = next(
            a for a in ("neutrophils", "wbc", "platelets", "lymphocytes") if a in components
        )
        components[count]["value"] = -abs(components[count]["value"]) or -1
    elif variant == "naive_timestamp":
        obj["collected_at"] = obj["collected_at"].replace("Z", "")[:19]
    elif variant == "unknown_analyte":
        components["troponin_t"] = {"value": 14, "unit": "ng/L"}
    elif variant == "oversize":
        obj["context"]["note"] = "x" * (MAX_MESSAGE_BYTES + 1024)
    else:  # pragma: no cover - guarded by MALFORMED_VARIANTS
        raise ValueError(f"unknown malformed variant {variant!r}")
    return encode_json(obj), False


def _moment(start: datetime, day: float, offset_minutes: int) -> datetime:
    zone = timezone(timedelta(minutes=offset_minutes))
    return (start + day * _DAY).astimezone(zone).replace(microsecond=0)


class Encoder:
    """Drafts of results in each patient's lab format."""

    def __init__(self, start: datetime, formats: Sequence[Topic]) -> None:
        self.start = start
        self.formats = formats

    def draft(self, s: Specimen, result: dict[str, Any], kind: MessageKind, sent: float) -> Draft:
        key = s.patient.patient_id.encode()
        canonical = encode_json(result)
        topic = self.formats[s.patient.index]
        if topic == "results":
            return Draft(key, canonical, kind, sent)
        sent_at = _moment(self.start, sent, s.patient.lab.utc_offset_minutes)
        value = (
            to_hl7v2(result, sent_at=sent_at)
            if topic == "hl7v2"
            else to_fhir(result, sent_at=sent_at)
        )
        return Draft(key, value, kind, sent, topic=topic, canonical=canonical)
