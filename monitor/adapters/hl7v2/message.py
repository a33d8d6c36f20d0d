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
- OBX-11 W/D rows withdraw their analyte (``retracted``; the result is then corrected); a
  specimen whose every CBC row is W/D is ``retracted`` as a whole, with no components.
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

from monitor.adapters.errors import AdapterError
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
from monitor.clinical.analytes import Analyte
from monitor.clinical.model import CBCResult, describe_validation_error

__all__ = ["parse_oru"]

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
    withdrawn: set[Analyte] | None = None,
) -> CBCResult:
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
    statuses = {row.status for row in chosen.values()}
    # Rows posted as wrong or deleted withdraw their analyte, unless the specimen sends that
    # analyte again (the new row replaces the withdrawn one).
    retracted = sorted((withdrawn or set()) - set(chosen))
    if not chosen:
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
        "retracted": retracted,
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
    segments = split_segments(message)
    check_msh(segments[0])
    groups: dict[str, list[tuple[_Panel, list[Observation]]]] = {}
    withdrawn: dict[str, set[Analyte]] = {}  # specimen -> analytes of its W/D rows
    for panel in _panels(segments):
        rows = [
            row
            for obx, label in panel.observations
            if (row := read_obx(obx, label, local_codes)) is not None
        ]
        retracted = {
            analyte
            for obx, _ in panel.observations
            if (analyte := retracted_analyte(obx, local_codes)) is not None
        }
        if rows or retracted:
            key = specimen_id(panel.obr, panel.specimen, panel.label)
            groups.setdefault(key, []).append((panel, rows))
            withdrawn.setdefault(key, set()).update(retracted)
    if not groups:
        raise AdapterError("no CBC component in any OBX")
    return [
        _result(result_id, members, default_tz, withdrawn.get(result_id))
        for result_id, members in groups.items()
    ]
