"""The FHIR R4 Observation reader: one Observation to one CBC component (``read_observation``)
with its value, unit, reference range, status, effective time, subject and specimen, in the
context of the DiagnosticReport that lists it, if any.

Rules (see the adapter brief and CLINICAL.md section 3):

- A component is an Observation with a LOINC coding that ``loinc.resolve`` maps to an analyte
  (or any coding found in ``local_codes``) and a ``valueQuantity``. The unit is the UCUM ``code``
  when ``system`` is UCUM, else ``unit``. Other Observations are ignored; an Observation without
  a value (``dataAbsentReason``), with no or an unknown unit, a negative value, or a code that
  disagrees with its unit or name is a row that cannot be used: ``RowError``, kept by the
  message reader as a rejected row while the other Observations are read. An Observation
  ``entered-in-error`` (or listed by a report that is) is a ``retracted`` row, not a rejected
  one: its analyte, by code alone, is withdrawn from its specimen (no value needed). A value
  below a limit (``comparator`` ``<``) is read as just below it (``errors.censored_value``), so
  it is neither understated nor lost.
- ``referenceRange[0].low`` is the lower limit when its unit is an equivalent spelling of the
  value's unit, or absent.
- The subject and effective time are the Observation's, else its report's.
- The specimen id (the ``result_id``) is ``specimen``, else the report's specimen, identifier
  or id, else a hash of subject and collection time, so that Observations of one draw sent one
  at a time get the same ``result_id``.

Error messages name elements and positions (``entry[3].resource``), never values.

Over 400 lines on purpose: every way each field of one Observation can fail has its own
rejected-row cause and reason here; split, one resource's reading would be scattered.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.adapters.errors import AdapterError, RowError, censored_value
from monitor.adapters.fhir.references import TYPE_ID, Located, Scope, contained_scope, lookup
from monitor.adapters.fhir.resources import (
    LOINC_SYSTEM,
    UCUM_SYSTEM,
    CodeableConcept,
    Coding,
    DiagnosticReport,
    Observation,
    Patient,
    Quantity,
    Reference,
    Specimen,
    UnreadableObservation,
)
from monitor.adapters.loinc import LOINC, CodeMismatchError, resolve
from monitor.clinical.analytes import Analyte, Sex, read_sex
from monitor.clinical.units import UnknownUnitError, factor

__all__ = [
    "IDENTITY_CAUSES",
    "OBSERVATION_STATUS",
    "RESULT_RANK",
    "Report",
    "Row",
    "read_observation",
]

# Row causes that say the row's patient or time cannot be read: when no row of a message is
# read and every rejected row has one of these, the message itself is unreadable.
IDENTITY_CAUSES = frozenset({"subject", "time"})

# Observation.status (R4) -> canonical status; None means skipped.
OBSERVATION_STATUS: dict[str, str | None] = {
    "final": "final",
    "amended": "corrected",
    "corrected": "corrected",
    "preliminary": "preliminary",
    "registered": "preliminary",
    "unknown": "preliminary",
    "cancelled": None,
    # Withdrawn by the lab: the value is removed from the patient's history (``retracted``).
    "entered-in-error": "retracted",
}

# Which status a merged result gets: the least settled wins.
RESULT_RANK = {"final": 0, "corrected": 1, "preliminary": 2}

# A FHIR dateTime: a date, optionally a time, and (required with a time) a zone. Seconds are
# optional here although R4 requires them; feeds drop them.
_DATETIME = re.compile(
    r"^(?P<date>\d{4}(-\d{2}(-\d{2})?)?)"
    r"(?:T(?P<time>\d{2}:\d{2}(:\d{2}(?P<frac>\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:\d{2})?)?$"
)


@dataclass(slots=True)
class Report:
    """The DiagnosticReport an Observation is listed in, as read by ``message``."""

    resource: DiagnosticReport
    where: str
    scope: Scope
    status: str | None  # None: cancelled or entered in error, so skipped with its results
    complete: bool


@dataclass(slots=True)
class Row:
    """One usable Observation, with the identity of the result it belongs to."""

    analyte: Analyte
    component: dict[str, Any]
    status: str
    where: str
    result_id: str
    patient_id: str
    sex: Sex | None
    collected_at: datetime
    complete: bool  # belongs to a report that lists all its results


def read_observation(
    located: Located,
    scope: Scope,
    index: Mapping[str, Located],
    local_codes: Mapping[str, Analyte] | None,
    report: Report | None,
) -> Row | None:
    """One Observation as a CBC component (a ``retracted`` row with no value when it was
    entered in error), or None when it carries none (not a CBC code, a skipped status); raises
    RowError when it is a CBC row that cannot be used (no value, unit, code), AdapterError
    naming its position when the message itself is inconsistent.

    ``scope`` holds the resources contained in the report that lists it, ``index`` the message's
    resources by ``fullUrl`` and ``Type/id``.
    """
    obs = located.resource
    assert isinstance(obs, Observation)
    where = located.where
    candidates = list(_candidate_codings(obs.code, local_codes)) if obs.code is not None else []
    if obs.code is not None and not candidates:
        return None  # not a CBC component, whatever else is wrong with it
    if isinstance(obs, UnreadableObservation):
        raise RowError(where, obs.cause, obs.reason)
    if obs.status is None:
        raise RowError(where, "status", "status missing")
    if obs.status not in OBSERVATION_STATUS:
        raise RowError(where, "status", "status is not an Observation status")
    status = OBSERVATION_STATUS[obs.status]
    if report is not None and report.status == "retracted":
        status = "retracted"  # the whole report was entered in error
    if status is None or obs.code is None:
        return None
    if status == "retracted":
        # Withdrawn: which analyte is all that matters (the value and unit were wrong).
        if candidates[0].code is None:
            return None
        analyte = (local_codes or {}).get(candidates[0].code) or LOINC[candidates[0].code].analyte
        component: dict[str, Any] = {}
    else:
        quantity = obs.value_quantity
        if quantity is None or quantity.value is None:
            raise RowError(where, "no_value", "no valueQuantity.value (absent or dataAbsentReason)")
        if not math.isfinite(quantity.value):
            raise RowError(where, "no_value", "valueQuantity.value is not a finite number")
        unit = _unit(quantity)
        if unit is None:
            raise RowError(where, "unit", "valueQuantity has no unit")
        analyte = _analyte(candidates, obs.code, unit, local_codes, where)
        if quantity.value < 0:
            raise RowError(where, "implausible", "valueQuantity.value is negative")
        value = censored_value(quantity.comparator, quantity.value)
        component = {"value": value, "unit": unit}
        lln = _lln(obs, analyte, unit)
        if lln is not None:
            component["lln"] = lln

    if obs.contained:
        scope = contained_scope(obs, where, scope)
    # The Observation's own subject and time are its row's; its report's are the message's.
    if obs.subject is not None or report is None:
        patient_id, sex = _patient(obs.subject, scope, index, where, row=True)
    else:
        patient_id, sex = _patient(
            report.resource.subject, report.scope, index, report.where, row=False
        )
    collected_at = _effective(obs, where, row=True)
    if collected_at is None and report is not None:
        collected_at = _effective(report.resource, report.where, row=False)
    if collected_at is None:
        raise RowError(where, "time", "effective[x] missing")
    result_id = _result_id(obs, scope, index, report) or _derived_id(patient_id, collected_at)
    statuses = [status] if report is None or report.status is None else [status, report.status]
    return Row(
        analyte=analyte,
        component=component,
        status=max(statuses, key=RESULT_RANK.__getitem__) if status != "retracted" else status,
        where=where,
        result_id=result_id,
        patient_id=patient_id,
        sex=sex,
        collected_at=collected_at,
        complete=report is not None and report.complete,
    )


def _candidate_codings(
    code: CodeableConcept, local_codes: Mapping[str, Analyte] | None
) -> Iterator[Coding]:
    """Codings that may name a CBC component: LOINC ones first, then the site's own."""
    local = local_codes or {}
    for coding in code.coding:
        if coding.system == LOINC_SYSTEM and (coding.code in LOINC or coding.code in local):
            yield coding
    for coding in code.coding:
        if coding.system != LOINC_SYSTEM and coding.code in local:
            yield coding


def _analyte(
    candidates: list[Coding],
    code: CodeableConcept,
    unit: str,
    local_codes: Mapping[str, Analyte] | None,
    where: str,
) -> Analyte:
    analytes: set[Analyte] = set()
    first: Analyte | None = None
    for coding in candidates:
        assert coding.code is not None
        try:
            analyte = resolve(coding.code, unit, coding.display or code.text, local_codes)
        except CodeMismatchError as exc:
            cause = "code" if "the name of" in str(exc) else "unit"
            raise RowError(where, cause, str(exc)) from None
        if analyte is not None:
            analytes.add(analyte)
            first = first or analyte
    if first is None:  # pragma: no cover - every candidate is a known code
        raise AdapterError(f"{where}: code.coding names no CBC component")
    if len(analytes) > 1:
        raise RowError(where, "code", "code.coding names different analytes")
    return first


def _unit(quantity: Quantity) -> str | None:
    if quantity.system == UCUM_SYSTEM and quantity.code:
        return quantity.code
    return quantity.unit or None


def _lln(obs: Observation, analyte: Analyte, unit: str) -> float | None:
    if not obs.reference_range:
        return None
    low = obs.reference_range[0].low
    if low is None or low.value is None or low.comparator is not None:
        return None
    low_unit = _unit(low)
    if low_unit is None or low_unit == unit:
        return low.value
    try:
        same = factor(analyte, low_unit) == factor(analyte, unit)
    except UnknownUnitError:
        return None
    return low.value if same else None


class _IdentityError(ValueError):
    """A subject or time that cannot be read (the reason names elements, never values)."""


def _identity_error(where: str, cause: str, reason: str, *, row: bool) -> AdapterError:
    """An unreadable subject or time: of one row (``RowError``) when it is the Observation's
    own, of the whole message when it is its report's."""
    return RowError(where, cause, reason) if row else AdapterError(f"{where}: {reason}")


def _patient(
    subject: Reference | None,
    scope: Scope,
    index: Mapping[str, Located],
    where: str,
    *,
    row: bool,
) -> tuple[str, Sex | None]:
    """The patient id and, when the Patient is in the message, the sex; raises
    ``_identity_error`` (cause ``subject``) when no patient id can be read."""
    try:
        return _read_patient(subject, scope, index)
    except _IdentityError as exc:
        raise _identity_error(where, "subject", str(exc), row=row) from None


def _read_patient(
    subject: Reference | None, scope: Scope, index: Mapping[str, Located]
) -> tuple[str, Sex | None]:
    if subject is None:
        raise _IdentityError("subject missing")
    by_identifier = subject.identifier.value if subject.identifier else None
    if not subject.reference:
        if by_identifier:
            return by_identifier, None
        raise _IdentityError("subject has neither reference nor identifier")
    target = lookup(subject.reference, scope, index)
    tail = TYPE_ID.search(subject.reference)
    if (target is not None and not isinstance(target.resource, Patient)) or (
        tail is not None and tail[1] != "Patient"
    ):
        raise _IdentityError("subject is not a Patient")
    patient = target.resource if target is not None else None
    assert patient is None or isinstance(patient, Patient)
    sex = read_sex(patient.gender) if patient is not None else None
    if tail is not None:  # Patient/<id>
        return tail[2], sex
    if patient is not None and target is not None:  # '#id' or 'urn:uuid:...' in the message
        if not target.contained and patient.id:
            return patient.id, sex
        patient_id = _patient_identifier(patient)
        if patient_id is not None:
            return patient_id, sex
    if by_identifier:
        return by_identifier, sex
    raise _IdentityError("subject names no patient id")


def _patient_identifier(patient: Patient) -> str | None:
    """The medical record number (identifier of type MR) if there is one, else the first."""
    for identifier in patient.identifier:
        codes = identifier.type.coding if identifier.type else []
        if identifier.value and any(c.code == "MR" for c in codes):
            return identifier.value
    return next((i.value for i in patient.identifier if i.value), None)


def _effective(
    resource: Observation | DiagnosticReport, where: str, *, row: bool
) -> datetime | None:
    """The effective time, None when none is sent; raises ``_identity_error`` (cause
    ``time``) when the one sent cannot be read."""
    element, text = "", None
    if resource.effective_date_time is not None:
        element, text = "effectiveDateTime", resource.effective_date_time
    elif resource.effective_period is not None and resource.effective_period.start is not None:
        element, text = "effectivePeriod.start", resource.effective_period.start
    elif isinstance(resource, Observation) and resource.effective_instant is not None:
        element, text = "effectiveInstant", resource.effective_instant
    if text is None:
        return None
    try:
        return _datetime(text)
    except _IdentityError as exc:
        raise _identity_error(where, "time", f"{element} {exc}", row=row) from None


def _datetime(text: str) -> datetime:
    """A FHIR dateTime with a time of day and a zone; raises ValueError saying what is
    missing (``_IdentityError``, never repeating the text)."""
    match = _DATETIME.match(text)
    if match is None:
        raise _IdentityError("is not a FHIR dateTime")
    if match["time"] is None:
        raise _IdentityError(
            "has a date but no time of day (a date without a time of day cannot be ordered "
            "against other results; a time and a zone offset are required)"
        )
    if match["zone"] is None:
        raise _IdentityError("has no time zone")
    if len(match["date"]) != 10:
        raise _IdentityError("is not a FHIR dateTime")
    if match["frac"] and len(match["frac"]) > 7:  # Python reads at most microseconds
        text = text.replace(match["frac"], match["frac"][:7], 1)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise _IdentityError("is not a valid date and time") from None


def _result_id(
    obs: Observation, scope: Scope, index: Mapping[str, Located], report: Report | None
) -> str | None:
    specimen = _specimen_id(obs.specimen, scope, index)
    if specimen is not None or report is None:
        return specimen
    for reference in report.resource.specimen:
        specimen = _specimen_id(reference, report.scope, index)
        if specimen is not None:
            return specimen
    for identifier in report.resource.identifier:
        if identifier.value:
            return identifier.value
    return report.resource.id


def _specimen_id(
    reference: Reference | None, scope: Scope, index: Mapping[str, Located]
) -> str | None:
    if reference is None:
        return None
    if reference.reference:
        tail = TYPE_ID.search(reference.reference)
        if tail is not None:  # Specimen/<id>
            return tail[2]
        target = lookup(reference.reference, scope, index)
        if target is not None and isinstance(target.resource, Specimen):
            specimen = target.resource
            if not target.contained and specimen.id:
                return specimen.id
            if specimen.accession_identifier and specimen.accession_identifier.value:
                return specimen.accession_identifier.value
            value = next((i.value for i in specimen.identifier if i.value), None)
            if value is not None:
                return value
    if reference.identifier and reference.identifier.value:
        return reference.identifier.value
    return None


def _derived_id(patient_id: str, collected_at: datetime) -> str:
    """A stable id for Observations of one draw sent without a specimen."""
    instant = collected_at.astimezone(UTC).isoformat()
    digest = hashlib.sha256(f"{patient_id}|{instant}".encode()).hexdigest()
    return f"fhir-{digest[:20]}"
