"""Physiologically possible values of each analyte, and the internal consistency of one
specimen's values: what a living patient can have. A value outside is a data error (a unit or
magnitude slip, a blank or QC run sent with a patient id), never a finding, so it is rejected
as ``implausible`` and never graded (CLINICAL.md section 7).

The limits are wide on purpose: hyperleukocytosis (WBC > 100 and up to several hundred
x10^9/L), platelets near 0 or above 3,000 x10^9/L and hemoglobin near 2 g/dL are real and must
be graded. Internal consistency is the stronger check. Sources are named beside each number;
the research note behind them is ``docs/research/ucum-and-plausibility.md`` section 2
(numbers marked *judgment* or *unverified* there are marked so here).

All values are in canonical units (``units.CANONICAL_UNIT``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.clinical.analytes import Analyte
from monitor.clinical.units import CANONICAL_UNIT, to_canonical

__all__ = ["LIMITS", "Finding", "Limit", "implausible", "shown_unit"]


@dataclass(frozen=True, slots=True)
class Limit:
    """The closed range of possible values, in the analyte's canonical unit."""

    low: float
    high: float
    source: str


_ANALYZER = (
    "analyzer operating ranges: Beckman Coulter LH 750 (WBC 0-900, PLT 0-5000 x10^3/uL, "
    "Hgb 0-99.9 g/dL operating; linearity WBC 400, PLT 3000, Hgb 25), Siemens ADVIA 2120 "
    "(WBC 400, PLT 3500 x10^3/uL, Hgb 22.5 g/dL), Sysmex XN-L (WBC reportable 0.03-440 x10^3/uL,"
    " RBC 0.01-8.60 x10^6/uL)"
)

LIMITS: dict[Analyte, Limit] = {
    # WBC 774 x10^9/L documented in CLL (Rev Romana Med Lab 22(4):507); hyperleukocytosis is
    # > 100 (Gong et al., Oncol Lett 2014, doi:10.3892/ol.2014.2326); 0.00 occurs in aplasia.
    # The 1,500 ceiling is judgment, with headroom over the LH 750's 900 operating range.
    Analyte.WBC: Limit(0.0, 1500.0, f"CLL case 774 x10^9/L; {_ANALYZER}; ceiling: judgment"),
    # Absolute counts cannot exceed WBC (see the consistency rules); same ceiling as WBC.
    Analyte.NEUTROPHILS: Limit(0.0, 1500.0, "as WBC; LH 750 NE# operating range 0-400"),
    Analyte.LYMPHOCYTES: Limit(0.0, 1500.0, "as WBC (CLL: lymphocytes near WBC); LH 750 LY#"),
    # Essential thrombocythemia > 3,000 x10^9/L (Hemosurf, Univ. Bern); LH 750 operating 5,000.
    Analyte.PLATELETS: Limit(0.0, 5000.0, f"ET above 3,000 x10^9/L (Hemosurf); {_ANALYZER}"),
    # Recovery from a nadir of 2 g/dL (Blood 2013;122(21):4657); analyzer top 22.5-25 g/dL.
    # The 1.0 and 26 limits are judgment.
    Analyte.HEMOGLOBIN: Limit(1.0, 26.0, f"Hb 2 g/dL survived (Blood 2013); {_ANALYZER}"),
    # Unverified (no stored analyzer HCT range); consistent with Hb <= 26 x 3.
    Analyte.HEMATOCRIT: Limit(3.0, 80.0, "unverified: judgment, about 3 x the Hb limits"),
    # XN-L reportable 8.6, LH 750 linearity 8.0 x10^12/L; the 0.3 and 10 limits are judgment.
    Analyte.RBC: Limit(0.3, 10.0, f"{_ANALYZER}; limits: judgment"),
    # Unverified: the stored sources give only the 80-100 fL reference interval.
    Analyte.MCV: Limit(40.0, 160.0, "unverified: judgment"),
    Analyte.NEUTROPHILS_PCT: Limit(0.0, 100.0, "a percentage of leukocytes"),
    Analyte.BANDS_PCT: Limit(0.0, 100.0, "a percentage of leukocytes"),
    Analyte.LYMPHOCYTES_PCT: Limit(0.0, 100.0, "a percentage of leukocytes"),
}

# An absolute neutrophil or lymphocyte count above this (x10^9/L) is believed only when the WBC
# of the same specimen confirms it: above the LH 750's NE#/LY# linearity (100), and the typical
# magnitude slip (312 "x10^9/L" meant 312 /uL). A lone such count is rejected, and so is one the
# WBC contradicts, without rejecting the WBC. Judgment; LH 750 linearity as above.
CORROBORATE_ABOVE = 100.0

# ANC, ALC and ANC + ALC may exceed WBC by at most max(5 % of WBC, 0.1 x10^9/L): rounding,
# separate analyzer channels, NRBC-corrected WBC. Judgment (research note 2.3, rule 1).
WBC_TOLERANCE_FRACTION = 0.05
WBC_TOLERANCE_MIN = 0.1

# NEUT% + BANDS% + LYMPH% <= 100 + 2 (integer rounding of a 5-6 part differential; a manual
# 100-cell differential sums to exactly 100). Judgment (research note 2.3, rule 2).
DIFFERENTIAL_MAX_PCT = 102.0

# MCHC = 100 x Hb (g/dL) / Hct (%) outside 22-45 g/dL is a data error: the rule of three
# (Hct ~ 3 x Hb) for normocytic cells, MCHC above 36-37 is artefact except spherocytosis and
# some SS/SC disease (Pacurar et al., Rev Romana Med Lab 2006;4). The 22 and 45 limits are
# judgment (unverified), wide enough for severe iron deficiency; an Hct sent as a fraction
# next to Hb in g/dL (MCHC ~ 3,000) is caught too.
MCHC_LIMITS = (22.0, 45.0)


@dataclass(frozen=True, slots=True)
class Finding:
    """Rows that cannot be true together or alone, and why (analytes and units, no values)."""

    analytes: tuple[Analyte, ...]
    reason: str


_ANNOTATION = re.compile(r"\{[^}]*\}")


def shown_unit(unit: str) -> str:
    """A unit as a reason may repeat it: UCUM annotations (``{cells}``, free text a sender could
    fill with anything) are blanked to ``{}``, and the length is bounded."""
    return _ANNOTATION.sub("{}", unit)[:32]


def _range_finding(analyte: Analyte, value: float, unit: str) -> Finding | None:
    limit = LIMITS[analyte]
    if limit.low <= value <= limit.high:
        return None
    return Finding(
        (analyte,),
        f"implausible {analyte}: outside the possible range {limit.low:g}-{limit.high:g} "
        f"{CANONICAL_UNIT[analyte]} (unit read: {shown_unit(unit)})",
    )


def implausible(values: Mapping[Analyte, tuple[float, str]]) -> list[Finding]:
    """The implausible rows of one specimen (``values``: analyte to (value, unit) as sent, the
    unit known for the analyte). Each analyte appears in at most one finding.

    Order: each value against ``LIMITS``; a high ANC or ALC against its WBC
    (``CORROBORATE_ABOVE``); then the consistency rules over the values left: ANC, ALC and their
    sum against WBC, the differential percentages' sum, and MCHC from Hb and Hct.
    """
    findings: list[Finding] = []
    canonical: dict[Analyte, float] = {}
    units: dict[Analyte, str] = {}
    for analyte, (value, unit) in values.items():
        amount = to_canonical(analyte, value, unit)
        finding = _range_finding(analyte, amount, unit)
        if finding is not None:
            findings.append(finding)
        else:
            canonical[analyte] = amount
            units[analyte] = unit
    wbc = canonical.get(Analyte.WBC)
    tolerance = max(WBC_TOLERANCE_FRACTION * wbc, WBC_TOLERANCE_MIN) if wbc is not None else 0.0
    for analyte in (Analyte.NEUTROPHILS, Analyte.LYMPHOCYTES):
        count = canonical.get(analyte)
        if count is None or count <= CORROBORATE_ABOVE:
            continue
        if wbc is None or count > wbc + tolerance:
            del canonical[analyte]
            findings.append(
                Finding(
                    (analyte,),
                    f"implausible {analyte}: above {CORROBORATE_ABOVE:g} 10^9/L without a WBC "
                    f"of the same specimen to confirm it (unit read: {shown_unit(units[analyte])})",
                )
            )
    if wbc is not None:
        findings.extend(_against_wbc(canonical, wbc, tolerance))
    findings.extend(_differential(canonical))
    findings.extend(_mchc(canonical, units))
    return findings


def _against_wbc(canonical: dict[Analyte, float], wbc: float, tolerance: float) -> list[Finding]:
    found: list[Finding] = []
    parts = [a for a in (Analyte.NEUTROPHILS, Analyte.LYMPHOCYTES) if a in canonical]
    over = [a for a in parts if canonical[a] > wbc + tolerance]
    if over:
        names = " and ".join(str(a) for a in over)
        found.append(Finding((*over, Analyte.WBC), f"implausible: {names} above wbc"))
    elif len(parts) == 2 and sum(canonical[a] for a in parts) > wbc + tolerance:
        found.append(
            Finding((*parts, Analyte.WBC), "implausible: neutrophils + lymphocytes above wbc")
        )
    for analyte in (f for finding in found for f in finding.analytes):
        canonical.pop(analyte, None)
    return found


def _differential(canonical: dict[Analyte, float]) -> list[Finding]:
    percents = [
        a
        for a in (Analyte.NEUTROPHILS_PCT, Analyte.BANDS_PCT, Analyte.LYMPHOCYTES_PCT)
        if a in canonical
    ]
    if sum(canonical[a] for a in percents) <= DIFFERENTIAL_MAX_PCT:
        return []
    for analyte in percents:
        del canonical[analyte]
    return [
        Finding(
            tuple(percents),
            f"implausible: differential percentages sum above {DIFFERENTIAL_MAX_PCT:g} %",
        )
    ]


def _mchc(canonical: dict[Analyte, float], units: Mapping[Analyte, str]) -> list[Finding]:
    hgb, hct = canonical.get(Analyte.HEMOGLOBIN), canonical.get(Analyte.HEMATOCRIT)
    if hgb is None or hct is None or hct <= 0:
        return []
    low, high = MCHC_LIMITS
    if low <= 100.0 * hgb / hct <= high:
        return []
    del canonical[Analyte.HEMOGLOBIN], canonical[Analyte.HEMATOCRIT]
    return [
        Finding(
            (Analyte.HEMOGLOBIN, Analyte.HEMATOCRIT),
            f"implausible: hemoglobin and hematocrit imply an MCHC outside {low:g}-{high:g} g/dL "
            f"(units read: {shown_unit(units[Analyte.HEMOGLOBIN])}, "
            f"{shown_unit(units[Analyte.HEMATOCRIT])})",
        )
    ]
