"""HL7 v2 ORU^R01 message assembly: the segments grouped into order observations (OBR with
its OBX rows and SPM, under the last PID before it), and those rows merged per specimen into
canonical CBC results.

Rules (see the adapter brief and CLINICAL.md section 3):

- An OBR belongs to the last PID before it; the ward is PV1-3.1 when sent.
- OBR panels with the same specimen id merge into one result; different specimens give
  separate results. Panels of one specimen must name one patient and one OBR-7 time.
- When one specimen sends an analyte twice, a row replaces an earlier one of equal or lower
  rank (preliminary, final, corrected). The result is corrected if any used row is C,
  preliminary if all used rows are preliminary, else final.
- A CBC row that cannot be used (``segments.read_obx`` raises ``RowError``) and a row the
  plausibility check rejects (``rows.screen``) are left out and listed in ``Parsed.rejections``;
  every other row is read. A result with a row left out is ``partial`` (it merges into what is
  known of its specimen instead of replacing it).
- OBX-11 W/D rows withdraw their analyte (``retracted``; the result is then corrected); they
  are retractions, not rejected rows. A specimen whose every CBC row is W/D is ``retracted`` as
  a whole, with no components; when a row of it was also rejected, only the W/D analytes are
  withdrawn (a ``partial`` corrected result with no values).
- The result is validated by ``CBCResult.model_validate`` as JSON input is.

Every ``AdapterError`` message names segments, fields and set ids, never a value from the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any

from pydantic import ValidationError

from monitor.adapters.errors import AdapterError, RowError, RowRejection
from monitor.adapters.hl7v2.encoding import Segment, split_segments
from monitor.adapters.hl7v2.segments import (
    Observation,
    Patient,
    check_msh,
    collection_time,
    read_obx,
    read_pid,
    retracted_analyte,
    specimen_id,
)
from monitor.adapters.rows import Parsed, screen
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult, describe_validation_error

__all__ = ["parse_oru", "read_oru"]

# When one specimen sends an analyte twice, a row replaces an earlier one of equal or lower rank.
_RANK = {"preliminary": 0, "final": 1, "corrected": 2}

_SET_ID = re.compile(r"\d{1,6}")


@dataclass(slots=True)
class _Panel:
    obr: Segment
    label: str
    patient: Patient
    observations: list[tuple[Segment, str]] = field(default_factory=list)
    specimen: Segment | None = None


def _label(segment: Segment, ordinal: int) -> str:
    set_id = segment.get(1)
    if _SET_ID.fullmatch(set_id):
        return f"{segment.name} {set_id}"
    return f"{segment.name} #{ordinal} (by position)"


def _panels(segments: list[Segment]) -> list[_Panel]:
    patient: Patient | None = None
    panels: list[_Panel] = []
    observations = 0
    for segment in segments[1:]:
        name = segment.name
        if name == "PID":
            patient = read_pid(segment)
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


def _result(
    result_id: str,
    members: list[tuple[_Panel, list[Observation]]],
    default_tz: tzinfo | None,
    rejections: list[RowRejection],
    withdrawn: set[Analyte] | None = None,
) -> CBCResult | None:
    first = members[0][0]
    if any(panel.patient != first.patient for panel, _ in members):
        raise AdapterError(f"{first.label}: panels of one specimen id name different patients")
    times = {
        t
        for panel, _ in members
        if (t := collection_time(panel.obr, panel.label, default_tz)) is not None
    }
    if not times:
        raise AdapterError(f"{first.label}: OBR-7 collection time is missing")
    if len(times) > 1:
        raise AdapterError(f"{first.label}: panels of one specimen differ in OBR-7 collection time")
    chosen: dict[Analyte, Observation] = {}
    for _, rows in members:
        for row in rows:
            earlier = chosen.get(row.analyte)
            if earlier is None or _RANK[row.status] >= _RANK[earlier.status]:
                chosen[row.analyte] = row
    left_out = screen({a: (row.value, row.unit, row.where) for a, row in chosen.items()})
    for rejection in left_out:
        chosen = {a: row for a, row in chosen.items() if row.where != rejection.where}
    rejections.extend(left_out)
    # A row of this specimen was left out: merge into what is known of it, never replace.
    partial = any(
        r.where.startswith(f"{panel.label}, ") for panel, _ in members for r in rejections
    )
    # Rows posted as wrong or deleted withdraw their analyte, unless the specimen sends that
    # analyte again (the new row replaces the withdrawn one).
    retracted = sorted((withdrawn or set()) - set(chosen))
    if not chosen and not retracted:
        return None  # every CBC row of the specimen was rejected
    statuses = {row.status for row in chosen.values()}
    if not chosen and not partial:
        status = "retracted"  # every CBC row withdrawn: the whole specimen
    elif "corrected" in statuses or retracted:
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
        "partial": partial,
        "retracted": retracted,
    }
    try:
        return CBCResult.model_validate(document)
    except ValidationError as exc:
        raise AdapterError(f"{first.label}: {describe_validation_error(exc)}") from None


def read_oru(
    message: bytes | str,
    *,
    local_codes: Mapping[str, Analyte] | None = None,
    default_tz: tzinfo | None = None,
) -> Parsed:
    """The CBC results of one HL7 v2 ORU^R01 message, one per specimen, in message order,
    built from its readable rows, and the rows left out (position and cause, no values).

    Raises AdapterError (a ValueError) when the message cannot give a patient, a specimen or a
    collection time, or has no CBC row at all.
    """
    segments = split_segments(message)
    check_msh(segments[0])
    groups: dict[str, list[tuple[_Panel, list[Observation]]]] = {}
    rejections: list[RowRejection] = []
    withdrawn: dict[str, set[Analyte]] = {}  # specimen -> analytes of its W/D rows
    for panel in _panels(segments):
        rows: list[Observation] = []
        for obx, label in panel.observations:
            try:
                row = read_obx(obx, label, local_codes)
            except RowError as exc:
                rejections.append(exc.rejection)
                continue
            if row is not None:
                rows.append(row)
        retracted = {
            analyte
            for obx, _ in panel.observations
            if (analyte := retracted_analyte(obx, local_codes)) is not None
        }
        if rows or retracted:
            key = specimen_id(panel.obr, panel.specimen, panel.label)
            groups.setdefault(key, []).append((panel, rows))
            withdrawn.setdefault(key, set()).update(retracted)
    if not groups and not rejections:
        raise AdapterError("no CBC component in any OBX")
    results = [
        result
        for result_id, members in groups.items()
        if (result := _result(result_id, members, default_tz, rejections, withdrawn.get(result_id)))
        is not None
    ]
    return Parsed(results, rejections)


def parse_oru(
    message: bytes | str,
    *,
    local_codes: Mapping[str, Analyte] | None = None,
    default_tz: tzinfo | None = None,
) -> list[CBCResult]:
    """``read_oru``, strict: raises AdapterError naming the first rejected row when any row was
    left out (for callers that have no dead-letter path for rows)."""
    parsed = read_oru(message, local_codes=local_codes, default_tz=default_tz)
    if parsed.rejections:
        raise AdapterError(parsed.rejections[0].describe())
    return parsed.results
