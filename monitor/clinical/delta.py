"""Delta checks: a change from the previous result too large to be physiology flags the specimen.

Labs compare a result with the patient's previous one to catch mislabelled specimens; a sudden
implausible jump deserves a "specimen suspect" flag rather than silence.
Source: CLINICAL.md section 4 (hemoglobin change > 3 g/dL in 24 h without transfusion; MCV
change > 3 fL), following common laboratory delta-check practice.
"""

from __future__ import annotations

from monitor.clinical.analytes import Analyte
from monitor.clinical.history import Entry

# Largest plausible absolute change between two specimens within the delta window, canonical unit.
DELTA_LIMITS: dict[Analyte, float] = {
    Analyte.HEMOGLOBIN: 3.0,  # g/dL
    Analyte.MCV: 3.0,  # fL
}


def specimen_suspect(
    entry: Entry,
    history: list[Entry],
    window_s: float,
    limits: dict[Analyte, float] = DELTA_LIMITS,
    explained_rises: frozenset[Analyte] = frozenset(),
) -> str | None:
    """Why ``entry`` looks like another patient's specimen, or None.

    Compares each limited analyte with the most recent earlier result that has it, if that one
    was collected within ``window_s`` before. A rise of an analyte in ``explained_rises`` (a
    transfusion shortly before) is not suspect. The reason names analytes and sizes, never the
    patient.
    """
    reasons: list[str] = []
    key = entry.sort_key
    for analyte, limit in limits.items():
        reading = entry.readings.get(analyte)
        if reading is None:
            continue
        for previous in reversed(history):
            if previous.sort_key >= key or not previous.alertable:
                continue
            if entry.collected_at - previous.collected_at > window_s:
                break
            before = previous.readings.get(analyte)
            if before is None:
                continue
            change = reading.value - before.value
            if abs(change) > limit and not (change > 0 and analyte in explained_rises):
                hours = (entry.collected_at - previous.collected_at) / 3600
                reasons.append(
                    f"{analyte.value} changed by {change:+.1f} within {hours:.0f} h "
                    f"(limit {limit:g})"
                )
            break
    return "; ".join(reasons) or None
