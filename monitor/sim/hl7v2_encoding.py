"""The simulator's results re-encoded as an HL7 v2 lab interface would send them.

``to_hl7v2`` takes one canonical result (the ``dict`` the simulator renders) and returns an
ORU^R01 v2.5.1 message, segments separated by CR: MSH, PID (PID-3 the patient id as a medical
record number, PID-8 F/M/U), PV1 (the ward, when known), one OBR for the panel (OBR-3 filler
order number = ``result_id``, OBR-7 collection time with its zone offset, OBR-25 F/C/P) and one
numeric OBX per component (OBX-3 LOINC, OBX-6 unit, OBX-7 reference range whose low end is the
lab's lower limit, OBX-11 F/C/P, OBX-14 collection time). Codes, units and numbers as in
``monitor.sim.encodings``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from monitor.adapters.loinc import CBC_PANELS, LOINC
from monitor.clinical.analytes import Analyte
from monitor.clinical.units import from_canonical
from monitor.sim.encodings import aware_moment, loinc_code, panel_code, plain_number, ucum

__all__ = ["HL7_STATUS", "to_hl7v2"]

HL7_STATUS: Final[dict[str, str]] = {"final": "F", "corrected": "C", "preliminary": "P"}
_HL7_SEX: Final = {"female": "F", "male": "M"}

# Upper ends of the reference ranges (canonical units), only to complete OBX-7 / referenceRange:
# the monitor reads the low end. Common adult limits.
_ULN: Final[dict[str, float]] = {
    "hemoglobin": 17.0,
    "hematocrit": 50.0,
    "rbc": 5.9,
    "mcv": 100.0,
    "wbc": 11.0,
    "neutrophils": 7.5,
    "lymphocytes": 4.0,
    "platelets": 400.0,
    "neutrophils_pct": 75.0,
    "bands_pct": 10.0,
    "lymphocytes_pct": 45.0,
}

_SENDING_APP: Final = "SIMLIS"
_SENDING_FACILITY: Final = "SIMLAB"
_RECEIVING_APP: Final = "CBCMON"
_RECEIVING_FACILITY: Final = "ONCOLOGY"
_ASSIGNING_AUTHORITY: Final = "SIMHOSP"


def _hl7_time(moment: datetime) -> str:
    """HL7 DTM with the zone offset: YYYYMMDDHHMMSS[.SSSS]+ZZZZ."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    text = moment.strftime("%Y%m%d%H%M%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 100:04d}"
    return f"{text}{sign}{hours:02d}{mins:02d}"


_HL7_ESCAPES: Final = (
    ("\\", "\\E\\"),
    ("|", "\\F\\"),
    ("^", "\\S\\"),
    ("&", "\\T\\"),
    ("~", "\\R\\"),
)


def _esc(text: str) -> str:
    """HL7 v2 escaping of the delimiters (escape character first)."""
    for raw, escaped in _HL7_ESCAPES:
        text = text.replace(raw, escaped)
    return text


def _hl7_unit(unit: str) -> str:
    """The lab's spelling, or its UCUM code when the spelling holds an HL7 delimiter."""
    if any(ch in unit for ch in "|^~\\&"):
        return ucum(unit)
    return unit


def _uln(analyte: str, unit: str) -> str | None:
    uln = _ULN.get(analyte)
    if uln is None:
        return None
    try:
        converted = from_canonical(Analyte(analyte), uln, unit)
    except ValueError:
        return None
    return plain_number(round(converted) if converted >= 100 else round(converted, 2))


def _control_id(result: Mapping[str, Any], sent: datetime | None) -> str:
    digest = hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode())
    if sent is not None:
        digest.update(sent.isoformat().encode())
    return digest.hexdigest()[:20].upper()


def to_hl7v2(result: Mapping[str, Any], *, sent_at: datetime | None = None) -> bytes:
    """An ORU^R01 v2.5.1 message carrying one canonical result (CR-separated segments).

    ``sent_at`` is the message time (MSH-7) and the report time (OBR-22); by default the
    collection time.
    """
    collected = aware_moment(result["collected_at"])
    sent = sent_at if sent_at is not None else collected
    status = HL7_STATUS[result.get("status", "final")]
    components: Mapping[str, Mapping[str, Any]] = result.get("components", {})
    context: Mapping[str, Any] = result.get("context") or {}
    observed = _hl7_time(collected)
    panel = panel_code(components)
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                _SENDING_APP,
                _SENDING_FACILITY,
                _RECEIVING_APP,
                _RECEIVING_FACILITY,
                _hl7_time(sent),
                "",
                "ORU^R01^ORU_R01",
                _control_id(result, sent_at),
                "P",
                "2.5.1",
                "",
                "",
                "NE",
                "NE",
            ]
        ),
        "|".join(
            [
                "PID",
                "1",
                "",
                f"{_esc(result['patient_id'])}^^^{_ASSIGNING_AUTHORITY}^MR",
                "",
                "SIMULATED^PATIENT",
                "",
                "",
                _HL7_SEX.get(result.get("sex") or "", "U"),
            ]
        ),
    ]
    if context.get("ward"):
        segments.append(f"PV1|1|O|{_esc(str(context['ward']))}")
    obr = [""] * 26
    obr[0] = "OBR"
    obr[1] = "1"
    obr[3] = _esc(result["result_id"])
    obr[4] = f"{panel}^{_esc(CBC_PANELS[panel])}^LN"
    obr[7] = observed
    obr[22] = _hl7_time(sent)
    obr[24] = "HM"
    obr[25] = status
    segments.append("|".join(obr))
    for i, (analyte, component) in enumerate(components.items(), start=1):
        unit = str(component["unit"])
        code = loinc_code(analyte, unit)
        sent_unit = _hl7_unit(unit)
        system = "UCUM" if ucum(unit) == sent_unit else "L"
        value = component["value"]
        lln = component.get("lln")
        reference = flag = ""
        if lln is not None:
            uln = _uln(analyte, unit)
            reference = f"{plain_number(lln)}-{uln}" if uln is not None else f">{plain_number(lln)}"
            flag = "L" if value < lln else "N"
        segments.append(
            "|".join(
                [
                    "OBX",
                    str(i),
                    "NM",
                    f"{code}^{_esc(LOINC[code].name)}^LN",
                    "",
                    plain_number(value),
                    f"{_esc(sent_unit)}^{_esc(sent_unit)}^{system}",
                    reference,
                    flag,
                    "",
                    "",
                    status,
                    "",
                    "",
                    observed,
                ]
            )
        )
    return ("\r".join(segments) + "\r").encode()
