"""Biological and analytical variation per analyte, and the reference change value (RCV).

Pure data and arithmetic. A change between two results of one patient is significant only when
it exceeds the RCV, which combines the analytical imprecision (CVa) and the within-subject
biological variation (CVi) of the analyte (Fraser CG, *Biological Variation: From Principles to
Practice*, AACC Press 2001):

    symmetric:  RCV = Z * sqrt(2) * sqrt(CVa^2 + CVi^2)
    log-normal: sigma = sqrt(ln(CV^2 + 1)), CV = sqrt(CVa^2 + CVi^2);
                up = exp(Z * sigma * sqrt(2)) - 1, down = exp(-Z * sigma * sqrt(2)) - 1

The log-normal form (Fokkema MR et al., Clin Chem 2006;52(8):1602-3) is used for the cell counts,
whose within-person distributions are skewed; the symmetric form for hemoglobin and the red cell
indices (CV about 3 %, where the two forms agree). Every question the monitor asks has a
direction ("has it genuinely fallen?", "has it genuinely risen?"), so Z is one-sided: 1.65
(95 %).

Evidence levels of the CVi figures (research note docs/research/rcv-variation.md, section 1).
None was read in the primary paper's own table:

- ``V2``: read in a stored public transcription of the named table of the source;
- ``NOT VERIFIED``: from memory; must be checked against the source before clinical use.

CVa defaults to 0.5 x CVi, the "desirable imprecision" (Eur J Haematol Suppl 1990;53:2-5, PMID
2279551, abstract; Ricos C et al., Scand J Clin Lab Invest 2004;64:175-84, not read here). That is
conservative at normal counts (the Sysmex XN CVa in C18 are far lower) but NOT at very low counts
(ANC < 0.5, platelets < 25), where counting statistics dominate: a site should enter the
low-level QC CVa of its analysers there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from monitor.clinical.analytes import Analyte

# One-sided 95 %: each hysteresis question has a direction (research note section 2).
DEFAULT_Z: Final = 1.65


@dataclass(frozen=True, slots=True)
class Variation:
    """CVi and CVa of one analyte, in percent, with where the figures come from."""

    cvi: float  # within-subject biological variation, %
    cvi_source: str
    evidence: str  # "V2" or "NOT VERIFIED" (see the module docstring)
    log_normal: bool  # skewed within-person distribution: asymmetric (log-normal) RCV
    floor: float  # canonical unit; values are clamped to it before taking ratios
    cva: float | None = None  # analytical imprecision, %; None: 0.5 x CVi (desirable goal)

    @property
    def cva_used(self) -> float:
        return self.cva if self.cva is not None else 0.5 * self.cvi


_C18 = "Coskun A et al., Clin Chem Lab Med 2018;56(8):1309-18 (C18), Table 1"
_C19 = "Coskun A et al., Clin Chem Lab Med 2020;58(1):25-32 (C19), Table 2"
_EFLM = "EFLM Biological Variation Database, whole-blood meta-analysis (accessed 2026-09-26)"

# CVi per analyte (research note docs/research/rcv-variation.md section 1, "Figures"). Floors:
# counts at the analyser's reporting limit region (10^9/L), hemoglobin in g/dL.
VARIATION: dict[Analyte, Variation] = {
    Analyte.HEMOGLOBIN: Variation(2.74, _C18, "V2", log_normal=False, floor=3.0),
    Analyte.HEMATOCRIT: Variation(2.71, _C19, "V2", log_normal=False, floor=10.0),
    Analyte.RBC: Variation(2.77, _C18, "V2", log_normal=False, floor=1.0),
    Analyte.MCV: Variation(0.72, _C18, "V2", log_normal=False, floor=50.0),
    Analyte.WBC: Variation(11.1, _EFLM, "V2", log_normal=True, floor=0.1),
    Analyte.NEUTROPHILS: Variation(12.5, _EFLM, "V2", log_normal=True, floor=0.1),
    Analyte.LYMPHOCYTES: Variation(10.5, _EFLM, "V2", log_normal=True, floor=0.1),
    Analyte.PLATELETS: Variation(7.3, _EFLM, "V2", log_normal=True, floor=5.0),
}


@dataclass(frozen=True, slots=True)
class Rcv:
    """The reference change values of an analyte, as fractions: ``down`` < 0 < ``up``."""

    down: float
    up: float


def rcv(variation: Variation, z: float = DEFAULT_Z) -> Rcv:
    """The RCV of one analyte at one-sided ``z``: the fractional fall and rise that are real.

    Symmetric for the red cell measures (down = -up), log-normal for the counts, so that
    (1 + up) * (1 + down) == 1 there. Raises ValueError for a non-positive ``z``.
    """
    if z <= 0:
        raise ValueError("z must be > 0")
    cv = math.hypot(variation.cva_used, variation.cvi) / 100
    if variation.log_normal:
        sigma = math.sqrt(math.log(cv * cv + 1))
        spread = z * sigma * math.sqrt(2)
        return Rcv(down=math.exp(-spread) - 1, up=math.exp(spread) - 1)
    symmetric = z * math.sqrt(2) * cv
    return Rcv(down=-symmetric, up=symmetric)


def relative_change(variation: Variation, compared_with: float, value: float) -> float:
    """The fractional change from ``compared_with`` to ``value`` (canonical unit), both clamped
    to the analyte's floor first, so a zero or censored count gives a finite change."""
    return max(value, variation.floor) / max(compared_with, variation.floor) - 1


class NoiseModel:
    """The RCV of each analyte at one ``z``, computed once (the detector's hysteresis uses it)."""

    def __init__(
        self, z: float = DEFAULT_Z, variation: Mapping[Analyte, Variation] | None = None
    ) -> None:
        self.z = z
        self.variation: Mapping[Analyte, Variation] = variation or VARIATION
        self.rcvs = {a: rcv(v, z) for a, v in self.variation.items()}

    def limits(self, analyte: str) -> tuple[Variation, Rcv] | None:
        """The analyte's variation and RCV, or None for an analyte without figures."""
        key = _BY_VALUE.get(analyte)
        if key is None or key not in self.rcvs:
            return None
        return self.variation[key], self.rcvs[key]


_BY_VALUE: dict[str, Analyte] = {a.value: a for a in Analyte}
