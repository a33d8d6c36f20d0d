"""HL7 v2 ORU^R01 lab results (v2.3 to 2.5.1) to canonical CBC results.

The message is split with python-hl7 (``hl7.parse``), which honours the encoding characters of
MSH-1/MSH-2; fields are read through ``_Segment.get`` and unescaped here (python-hl7's own
``unescape`` logs the field it fails on, which may be patient data, so it is not used).

Rules (see the adapter brief and CLINICAL.md section 3):

- Segments end in CR; LF and CRLF are accepted too. MLLP framing, a BOM and surrounding
  whitespace are stripped. One message per call (a second MSH is an error).
- Patient: PID-3, first repetition, CX.1; sex from PID-8 (F, M; anything else is unknown); ward
  from PV1-3.1 when sent. An OBR belongs to the last PID before it.
- Specimen (``result_id``): OBR-3 (filler order number, EI.1), else SPM-2 (filler, then
  placer assigned id), else OBR-2 (placer order number). OBR panels with the same specimen id
  merge into one result; different specimens give separate results.
- Collection time: OBR-7, ``YYYYMMDDHHMM[SS[.S...]][+/-ZZZZ]``; without an offset only when
  ``default_tz`` is given.
- A CBC component is an OBX whose OBX-3 code (else the alternate code, components 4-6) and
  OBX-6 unit ``loinc.resolve`` maps to an analyte; other rows are ignored. A code that
  disagrees with its unit or name is an error. Values: NM, or SN with one number (``<^0.5`` is
  read as just below 0.5, see ``errors.censored_value``); other value types and empty values
  carry no number and are skipped.
  OBX-7 gives the lower limit (``4.0-11.0``, ``>1.5``, ``>=1.5``); OBX-8 flags are not used.
- OBX-11: F/U final, C corrected, P/R/S preliminary; X/D/W/N/I/O rows are skipped. The result is
  corrected if any used row is C, preliminary if all used rows are preliminary, else final.
- The result is validated by ``CBCResult.model_validate`` as JSON input is.

Every ``AdapterError`` message names segments, fields and set ids, never a value from the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any

import hl7  # type: ignore[import-untyped]
from pydantic import ValidationError

from monitor.adapters.errors import AdapterError, censored_value
from monitor.adapters.loinc import CodeMismatchError, resolve
from monitor.clinical.analytes import Analyte, Sex
from monitor.clinical.model import CBCResult, describe_validation_error

__all__ = ["SUPPORTED_VERSIONS", "AdapterError", "looks_like_hl7", "parse_oru"]

# MSH-12 versions this adapter reads (ORU^R01 is structurally the same in all of them).
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")

_BOM = b"\xef\xbb\xbf"
_LEADING_BYTES = b" \t\r\n\x0b"  # whitespace and the MLLP start block
_TRAILING_BYTES = b" \t\r\n\x1c"  # whitespace and the MLLP end block (0x1c 0x0d)
_LEADING_CHARS = " \t\r\n\x0b\ufeff"
_TRAILING_CHARS = " \t\r\n\x1c"
_HL7_NULL = '""'  # "present and null": treated as empty

# OBX-11 (HL7 table 0085) -> canonical status; rows with a status in _SKIPPED carry no result.
_STATUS: dict[str, str] = {
    "F": "final",
    "U": "final",
    "C": "corrected",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
}
_SKIPPED = frozenset({"X", "D", "W", "N", "I", "O"})
# When one specimen sends an analyte twice, a row replaces an earlier one of equal or lower rank.
_RANK = {"preliminary": 0, "final": 1, "corrected": 2}

_SN_COMPARATORS = frozenset({"", "=", "<", ">", "<=", ">=", "<>"})
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_NM = re.compile(rf"[+-]?{_NUMBER}")
_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*{_NUMBER}\s*")
_LOWER_BOUND = re.compile(rf"\s*>=?\s*({_NUMBER})\s*")
_DTM = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?(?:([+-])(\d{2})(\d{2}))?"
)
_DATE_ONLY = re.compile(r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2})?)?)?(?:[+-]\d{4})?")
_SET_ID = re.compile(r"\d{1,6}")


# --- framing, encoding characters, tokens ---------------------------------------------------


def _strip_frame(raw: bytes) -> bytes:
    data = raw.lstrip(_LEADING_BYTES)
    if data.startswith(_BOM):
        data = data[len(_BOM) :].lstrip(_LEADING_BYTES)
    return data.rstrip(_TRAILING_BYTES)


def looks_like_hl7(raw: bytes) -> bool:
    """True if ``raw`` starts with an MSH segment (after whitespace, a BOM or MLLP framing)."""
    return _strip_frame(raw).startswith(b"MSH")


def _text(message: bytes | str) -> str:
    if isinstance(message, bytes):
        data = _strip_frame(message)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # v2 feeds often use ISO 8859-1 (MSH-18 "8859/1"); every separator is ASCII anyway.
            text = data.decode("latin-1")
    else:
        text = message
    text = text.lstrip(_LEADING_CHARS).rstrip(_TRAILING_CHARS)
    segments = text.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    return "\r".join(s for s in segments if s.strip())


@dataclass(frozen=True, slots=True)
class _Encoding:
    field: str
    component: str
    repetition: str
    escape: str
    subcomponent: str


def _encoding(text: str) -> _Encoding:
    if text[:3] in ("BHS", "FHS"):
        raise AdapterError("HL7 batch (FHS/BHS) not supported: send one message at a time")
    if not text.startswith("MSH"):
        raise AdapterError("not HL7 v2: no MSH segment")
    separator = text[3:4]
    end = text.find(separator, 4) if separator else -1
    characters = text[4:end] if end > 0 else ""
    chars = separator + characters[:4]
    if (
        len(characters) not in (4, 5)
        or len(set(chars)) != 5
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise AdapterError("MSH-1/MSH-2 encoding characters are missing or invalid")
    return _Encoding(*chars)


@lru_cache(maxsize=16)
def _escape_pattern(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"{e}([^{e}\r]*){e}")


def _unescape(text: str, enc: _Encoding) -> str:
    """Decode HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\, formatting)."""
    if enc.escape not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        sequence = match.group(1)
        simple = {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": enc.escape,
        }.get(sequence)
        if simple is not None:
            return simple
        if sequence.startswith("X"):
            try:
                data = bytes.fromhex(sequence[1:])
            except ValueError:
                return ""
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data.decode("latin-1")
        if sequence.startswith((".br", ".sp", ".ce")):
            return "\n"
        if sequence.startswith((".in", ".ti", ".sk")):
            return " "
        # Highlighting (H, N), character set switches (C, M), .fi/.nf and local (Z) escapes.
        return ""

    return _escape_pattern(enc.escape).sub(replace, text)


@dataclass(frozen=True, slots=True)
class _Segment:
    node: Any  # an hl7.Segment: nested lists of Field/Repetition/Component with str leaves
    enc: _Encoding

    @property
    def name(self) -> str:
        return _leaf(self.node, (0,))

    def get(self, field: int, component: int = 1) -> str:
        """First repetition of a field's component (1-based: ``get(3, 1)`` is PID-3.1), first
        subcomponent, unescaped and stripped; "" when absent or null (``""``)."""
        value = _leaf(self.node, (field, 0, component - 1, 0))
        if value == _HL7_NULL:
            return ""
        return _unescape(value, self.enc).strip()


def _leaf(node: Any, path: Sequence[int]) -> str:
    # python-hl7 stops nesting where a part has no separators: a shorter branch answers only
    # for the first position below it, and a longer one continues with its first child.
    for index in path:
        if isinstance(node, str):
            if index:
                return ""
            continue
        if index >= len(node):
            return ""
        node = node[index]
    while not isinstance(node, str):
        if not node:
            return ""
        node = node[0]
    return node


def _tokenize(text: str, enc: _Encoding) -> list[_Segment]:
    if any(s.startswith("MSH") for s in text.split("\r")[1:]):
        raise AdapterError("more than one MSH segment: send one message at a time")
    try:
        message = hl7.parse(text)
    except Exception:  # the library's messages quote the segment text: never pass them on
        raise AdapterError("HL7 message could not be split into segments") from None
    return [_Segment(segment, enc) for segment in message]


# --- message structure ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Patient:
    patient_id: str
    sex: Sex | None
    ward: str | None = None  # PV1-3.1, the point of care


@dataclass(slots=True)
class _Panel:
    obr: _Segment
    label: str
    patient: _Patient
    observations: list[tuple[_Segment, str]] = field(default_factory=list)
    specimen: _Segment | None = None


@dataclass(frozen=True, slots=True)
class _Row:
    analyte: Analyte
    value: float
    unit: str
    lln: float | None
    status: str


def _label(segment: _Segment, ordinal: int) -> str:
    set_id = segment.get(1)
    if _SET_ID.fullmatch(set_id):
        return f"{segment.name} {set_id}"
    return f"{segment.name} #{ordinal} (by position)"


def _check_header(msh: _Segment) -> None:
    if msh.get(9, 1).upper() != "ORU" or msh.get(9, 2).upper() != "R01":
        raise AdapterError("not an ORU^R01 message (MSH-9)")
    if msh.get(12, 1) not in SUPPORTED_VERSIONS:
        raise AdapterError(f"MSH-12 version is not one of {', '.join(SUPPORTED_VERSIONS)}")


def _patient(pid: _Segment) -> _Patient:
    patient_id = pid.get(3, 1)
    if not patient_id:
        raise AdapterError("PID-3 has no patient identifier")
    sex = {"F": Sex.FEMALE, "M": Sex.MALE}.get(pid.get(8).upper())
    return _Patient(patient_id, sex)


def _panels(segments: list[_Segment]) -> list[_Panel]:
    patient: _Patient | None = None
    panels: list[_Panel] = []
    observations = 0
    for segment in segments[1:]:
        name = segment.name
        if name == "PID":
            patient = _patient(segment)
        elif name == "PV1" and patient is not None:
            # The assigned location's point of care; context only, so cut rather than refuse.
            patient = replace(patient, ward=segment.get(3, 1)[:64] or None)
        elif name == "OBR":
            if patient is None:
                raise AdapterError("no PID segment before OBR: the message names no patient")
            panels.append(_Panel(segment, _label(segment, len(panels) + 1), patient))
        elif name == "OBX":
            observations += 1
            if not panels:
                raise AdapterError("OBX segment before any OBR segment")
            label = f"{panels[-1].label}, {_label(segment, observations)}"
            panels[-1].observations.append((segment, label))
        elif name == "SPM" and panels and panels[-1].specimen is None:
            panels[-1].specimen = segment
        # MSH, SFT, PD1, NK1, PV2, ORC, TQ1, NTE, CTD, FT1, CTI, Z-segments: not used.
    if not panels:
        raise AdapterError("no OBR segment in the message")
    return panels


# --- rows -----------------------------------------------------------------------------------


def _analyte(
    obx: _Segment, label: str, unit: str, local_codes: Mapping[str, Analyte] | None
) -> Analyte | None:
    for first in (1, 4):  # the code, then the alternate code (OBX-3.4 to 3.6)
        code = obx.get(3, first)
        if not code:
            continue
        try:
            analyte = resolve(
                code, unit, name=obx.get(3, first + 1) or None, local_codes=local_codes
            )
        except CodeMismatchError as exc:
            if not unit:
                raise AdapterError(f"{label}: OBX-6 has no unit for a CBC component") from None
            if local_codes is not None and code in local_codes:
                # A local code is text from the message: name its analyte instead.
                detail = f"a local code for {local_codes[code]}"
            else:
                detail = str(exc)  # names a LOINC code from the table and analytes only
            raise AdapterError(
                f"{label}: OBX-3 disagrees with its name or OBX-6 unit ({detail})"
            ) from None
        if analyte is not None:
            return analyte
    return None


def _value(obx: _Segment, label: str) -> float | None:
    value_type = obx.get(2).upper()
    if value_type == "NM":
        text = obx.get(5)
        if not text:
            return None
        if not _NM.fullmatch(text):
            raise AdapterError(f"{label}: OBX-5 is not a number (OBX-2 is NM)")
        return float(text)
    if value_type == "SN":
        comparator, number = obx.get(5, 1), obx.get(5, 2)
        separator, second = obx.get(5, 3), obx.get(5, 4)
        if not (comparator or number or separator or second):
            return None
        if comparator not in _SN_COMPARATORS:
            raise AdapterError(f"{label}: OBX-5 structured numeric has an unknown comparator")
        if separator or second:
            raise AdapterError(f"{label}: OBX-5 structured numeric is a range or ratio")
        if not _NM.fullmatch(number):
            raise AdapterError(f"{label}: OBX-5 structured numeric has no number")
        return censored_value(comparator, float(number))
    return None  # ST, TX, CWE...: no number to grade


def _lln(reference_range: str) -> float | None:
    match = _RANGE.fullmatch(reference_range) or _LOWER_BOUND.fullmatch(reference_range)
    return float(match.group(1)) if match else None


def _row(obx: _Segment, label: str, local_codes: Mapping[str, Analyte] | None) -> _Row | None:
    status_code = obx.get(11).upper()
    if status_code in _SKIPPED:
        return None
    unit = obx.get(6, 1) or obx.get(6, 2)
    analyte = _analyte(obx, label, unit, local_codes)
    if analyte is None:
        return None
    status = _STATUS.get(status_code)
    if status is None:
        raise AdapterError(f"{label}: OBX-11 result status is missing or not a known status")
    value = _value(obx, label)
    if value is None:
        return None
    return _Row(analyte, value, unit, _lln(obx.get(7)), status)


# --- specimens and results ------------------------------------------------------------------


def _specimen_id(panel: _Panel) -> str:
    candidates = [panel.obr.get(3, 1)]
    if panel.specimen is not None:
        candidates += [panel.specimen.get(2, 2), panel.specimen.get(2, 1)]
    candidates.append(panel.obr.get(2, 1))
    for candidate in candidates:
        if candidate:
            return candidate
    raise AdapterError(f"{panel.label}: no specimen id in OBR-3, SPM-2 or OBR-2")


def _collected_at(panel: _Panel, default_tz: tzinfo | None) -> datetime | None:
    text = panel.obr.get(7, 1)
    if not text:
        return None
    match = _DTM.fullmatch(text)
    if match is None:
        if _DATE_ONLY.fullmatch(text):
            raise AdapterError(f"{panel.label}: OBR-7 collection time is not precise to the minute")
        raise AdapterError(f"{panel.label}: OBR-7 collection time is not an HL7 date and time")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if not sign and default_tz is None:
        raise AdapterError(f"{panel.label}: OBR-7 collection time has no time zone offset")
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
        zone = default_tz
        if sign:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            zone = timezone(-offset if sign == "-" else offset)
    except ValueError:  # the library's messages quote the numbers
        raise AdapterError(
            f"{panel.label}: OBR-7 collection time is not a valid date, time or offset"
        ) from None
    return moment.replace(tzinfo=zone)


def _result(
    result_id: str,
    members: list[tuple[_Panel, list[_Row]]],
    default_tz: tzinfo | None,
) -> CBCResult:
    first = members[0][0]
    if any(panel.patient != first.patient for panel, _ in members):
        raise AdapterError(f"{first.label}: panels of one specimen id name different patients")
    times = {t for panel, _ in members if (t := _collected_at(panel, default_tz)) is not None}
    if not times:
        raise AdapterError(f"{first.label}: OBR-7 collection time is missing")
    if len(times) > 1:
        raise AdapterError(f"{first.label}: panels of one specimen differ in OBR-7 collection time")
    chosen: dict[Analyte, _Row] = {}
    for _, rows in members:
        for row in rows:
            earlier = chosen.get(row.analyte)
            if earlier is None or _RANK[row.status] >= _RANK[earlier.status]:
                chosen[row.analyte] = row
    statuses = {row.status for row in chosen.values()}
    if "corrected" in statuses:
        status = "corrected"
    elif statuses == {"preliminary"}:
        status = "preliminary"
    else:
        status = "final"
    components: dict[str, dict[str, Any]] = {}
    for analyte, row in chosen.items():
        component: dict[str, Any] = {"value": row.value, "unit": row.unit}
        if row.lln is not None:
            component["lln"] = row.lln
        components[analyte.value] = component
    document = {
        "result_id": result_id,
        "patient_id": first.patient.patient_id,
        "collected_at": times.pop(),
        "status": status,
        "sex": first.patient.sex,
        "components": components,
        "context": {"ward": first.patient.ward},
    }
    try:
        return CBCResult.model_validate(document)
    except ValidationError as exc:
        raise AdapterError(f"{first.label}: {describe_validation_error(exc)}") from None


def parse_oru(
    message: bytes | str,
    *,
    local_codes: Mapping[str, Analyte] | None = None,
    default_tz: tzinfo | None = None,
) -> list[CBCResult]:
    """The CBC results of one HL7 v2 ORU^R01 message, one per specimen, in message order.

    Raises AdapterError (a ValueError) when the message cannot give a patient, a specimen, a
    collection time or any CBC component, or a CBC row is inconsistent.
    """
    text = _text(message)
    enc = _encoding(text)
    segments = _tokenize(text, enc)
    _check_header(segments[0])
    groups: dict[str, list[tuple[_Panel, list[_Row]]]] = {}
    for panel in _panels(segments):
        rows = [
            row
            for obx, label in panel.observations
            if (row := _row(obx, label, local_codes)) is not None
        ]
        if rows:
            groups.setdefault(_specimen_id(panel), []).append((panel, rows))
    if not groups:
        raise AdapterError("no CBC component in any OBX")
    return [_result(result_id, members, default_tz) for result_id, members in groups.items()]
