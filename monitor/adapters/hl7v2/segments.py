"""Readers of the HL7 v2 segments an ORU^R01 CBC needs: MSH (message type and version), PID
(patient), OBR and SPM (specimen id, collection time) and OBX (one result row).

Rules (see the adapter brief and CLINICAL.md section 3):

- Patient: PID-3, first repetition, CX.1; sex from PID-8 (F, M, or the words in any case;
  O, U, A, N and anything else are unknown: ``analytes.read_sex``).
- Specimen (``result_id``): OBR-3 (filler order number, EI.1), else SPM-2 (filler, then
  placer assigned id), else OBR-2 (placer order number).
- Collection time: OBR-7, ``YYYYMMDDHHMM[SS[.S...]][+/-ZZZZ]``; without an offset only when
  ``default_tz`` is given.
- A CBC component is an OBX whose OBX-3 code (else the alternate code, components 4-6) and
  OBX-6 unit ``loinc.resolve`` maps to an analyte; other rows are ignored. A code that
  disagrees with its unit or name is an error. Values: NM, or SN with one number (``<^0.5`` is
  read as just below 0.5, see ``errors.censored_value``); other value types and empty values
  carry no number and are skipped.
  OBX-7 gives the lower limit (``4.0-11.0``, ``>1.5``, ``>=1.5``); OBX-8 flags are not used.
- OBX-11: F/U final, C corrected, P/R/S preliminary; X/N/I/O rows are skipped; W (posted as
  wrong, e.g. wrong patient) and D (deleted) withdraw the analyte of their code from the
  specimen (``retracted_analyte``: by code alone, as the value and unit of a wrong row may be
  anything).

Every ``AdapterError`` message names segments, fields and set ids, never a value from the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from monitor.adapters.errors import (
    NUMBER,
    AdapterError,
    NegativeNumberError,
    NotANumberError,
    RowError,
    censored_value,
    text_number,
)
from monitor.adapters.hl7v2.encoding import Segment
from monitor.adapters.loinc import LOINC, CodeMismatchError, UnknownUnitError, resolve
from monitor.clinical.analytes import Analyte, Sex, read_sex

__all__ = [
    "SUPPORTED_VERSIONS",
    "Observation",
    "Patient",
    "check_msh",
    "collection_time",
    "read_obx",
    "read_pid",
    "retracted_analyte",
    "specimen_id",
]

# MSH-12 versions this adapter reads (ORU^R01 is structurally the same in all of them).
SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")

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
# W: "post original as wrong, e.g. transmitted for wrong patient"; D: "delete the OBX record".
# Both withdraw a value sent before (HL7 v2.5.1 table 0085): see ``retracted_analyte``.
RETRACTING = frozenset({"W", "D"})

_SN_COMPARATORS = frozenset({"", "=", "<", ">", "<=", ">=", "<>"})
_NUMBER = NUMBER
_TEXT_TYPES = frozenset({"NM", "ST", "TX", "FT"})
# What `10^3/uL` or `x10^9/L` leaves in OBX-6.1 when its `^` is not escaped (`\S\`).
_UNIT_STUB = re.compile(r"[xX]?\d+")
_NM = re.compile(rf"[+-]?{_NUMBER}")
_RANGE = re.compile(rf"\s*({_NUMBER})\s*-\s*{_NUMBER}\s*")
_LOWER_BOUND = re.compile(rf"\s*>=?\s*({_NUMBER})\s*")
_DTM = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?(?:([+-])(\d{2})(\d{2}))?"
)
_DATE_ONLY = re.compile(r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2})?)?)?(?:[+-]\d{4})?")


# --- MSH, PID -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Patient:
    patient_id: str
    sex: Sex | None
    ward: str | None = None  # PV1-3.1, the point of care


def check_msh(msh: Segment) -> None:
    if msh.get(9, 1).upper() != "ORU" or msh.get(9, 2).upper() != "R01":
        raise AdapterError("not an ORU^R01 message (MSH-9)")
    if msh.get(12, 1) not in SUPPORTED_VERSIONS:
        raise AdapterError(f"MSH-12 version is not one of {', '.join(SUPPORTED_VERSIONS)}")


def read_pid(pid: Segment) -> Patient:
    patient_id = pid.get(3, 1)
    if not patient_id:
        raise AdapterError("PID-3 has no patient identifier")
    sex = read_sex(pid.get(8))
    return Patient(patient_id, sex)


# --- OBX ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observation:
    """One usable OBX row: a CBC component's value, unit, lower limit and status."""

    analyte: Analyte
    value: float
    unit: str
    lln: float | None
    status: str
    where: str = ""  # the row's label, e.g. "OBR 1, OBX 3"


def _analyte(
    obx: Segment, label: str, unit: str, local_codes: Mapping[str, Analyte] | None
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
                raise RowError(label, "unit", "OBX-6 has no unit for a CBC component") from None
            if _UNIT_STUB.fullmatch(obx.get(6, 1)) and obx.get(6, 2)[:1].isdigit():
                raise RowError(
                    label,
                    "truncated_unit",
                    "OBX-6 unit is truncated at a component separator (an unescaped ^)",
                ) from None
            if isinstance(exc, UnknownUnitError):
                raise RowError(label, "unit", "OBX-6 unit is not a known unit") from None
            if local_codes is not None and code in local_codes:
                # A local code is text from the message: name its analyte instead.
                detail = f"a local code for {local_codes[code]}"
            else:
                detail = str(exc)  # names a LOINC code from the table and analytes only
            raise RowError(
                label, "code", f"OBX-3 disagrees with its name or OBX-6 unit ({detail})"
            ) from None
        if analyte is not None:
            return analyte
    return None


def _value(obx: Segment, label: str) -> float:
    value_type = obx.get(2).upper()
    if value_type in _TEXT_TYPES:
        text = obx.get(5)
        if not text:
            raise RowError(label, "no_value", "OBX-5 is empty")
        try:
            return text_number(text)
        except NegativeNumberError:
            raise RowError(label, "implausible", "OBX-5 is a negative number") from None
        except NotANumberError:
            raise RowError(
                label, "no_value", f"OBX-5 is not a number (OBX-2 is {value_type})"
            ) from None
    if value_type == "SN":
        comparator, number = obx.get(5, 1), obx.get(5, 2)
        separator, second = obx.get(5, 3), obx.get(5, 4)
        if not (comparator or number or separator or second):
            raise RowError(label, "no_value", "OBX-5 is empty")
        if comparator not in _SN_COMPARATORS:
            raise RowError(label, "no_value", "OBX-5 structured numeric has an unknown comparator")
        if separator or second:
            raise RowError(label, "no_value", "OBX-5 structured numeric is a range or ratio")
        if not _NM.fullmatch(number):
            raise RowError(label, "no_value", "OBX-5 structured numeric has no number")
        if number.startswith("-") and float(number) != 0:
            raise RowError(label, "implausible", "OBX-5 is a negative number")
        return censored_value(comparator, abs(float(number)))
    raise RowError(label, "no_value", "OBX-2 is not a numeric value type (NM, SN, ST, TX, FT)")


def _lln(reference_range: str) -> float | None:
    match = _RANGE.fullmatch(reference_range) or _LOWER_BOUND.fullmatch(reference_range)
    return float(match.group(1)) if match else None


def read_obx(
    obx: Segment, label: str, local_codes: Mapping[str, Analyte] | None
) -> Observation | None:
    """One OBX row as a CBC component, or None when it is not one (not a CBC code, a skipped
    status); raises RowError naming ``label`` when it is a CBC row that cannot be used."""
    status_code = obx.get(11).upper()
    if status_code in _SKIPPED:
        return None
    unit = obx.get(6, 1) or obx.get(6, 2)
    analyte = _analyte(obx, label, unit, local_codes)
    if analyte is None:
        return None
    status = _STATUS.get(status_code)
    if status is None:
        raise RowError(label, "status", "OBX-11 result status is missing or not a known status")
    value = _value(obx, label)
    return Observation(analyte, value, unit, _lln(obx.get(7)), status, label)


def retracted_analyte(obx: Segment, local_codes: Mapping[str, Analyte] | None) -> Analyte | None:
    """The CBC analyte an OBX-11 ``W``/``D`` row withdraws, or None (another status, or not a
    CBC code). The code alone decides (OBX-3, else its alternate): the row is withdrawn
    because it was wrong, so its value and unit are not checked."""
    if obx.get(11).upper() not in RETRACTING:
        return None
    for first in (1, 4):
        code = obx.get(3, first)
        if local_codes is not None and code in local_codes:
            return local_codes[code]
        if code in LOINC:
            return LOINC[code].analyte
    return None


# --- OBR, SPM -------------------------------------------------------------------------------


def specimen_id(obr: Segment, spm: Segment | None, label: str) -> str:
    candidates = [obr.get(3, 1)]
    if spm is not None:
        candidates += [spm.get(2, 2), spm.get(2, 1)]
    candidates.append(obr.get(2, 1))
    for candidate in candidates:
        if candidate:
            return candidate
    raise AdapterError(f"{label}: no specimen id in OBR-3, SPM-2 or OBR-2")


def collection_time(obr: Segment, label: str, default_tz: tzinfo | None) -> datetime | None:
    text = obr.get(7, 1)
    if not text:
        return None
    match = _DTM.fullmatch(text)
    if match is None:
        if _DATE_ONLY.fullmatch(text):
            digits = len(text.split("+")[0].split("-")[0])
            what = "a date without a time of day" if digits <= 8 else "an hour without minutes"
            raise AdapterError(
                f"{label}: OBR-7 collection time is {what} (not precise to the minute)"
            )
        raise AdapterError(f"{label}: OBR-7 collection time is not an HL7 date and time")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    if not sign and default_tz is None:
        raise AdapterError(f"{label}: OBR-7 collection time has no time zone offset")
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
            f"{label}: OBR-7 collection time is not a valid date, time or offset"
        ) from None
    return moment.replace(tzinfo=zone)
