"""The analytes a CBC carries, the conditions the monitor tracks, and the default lower limits.

Everything here is data. Sources are named beside each table so anyone can check them.
"""

from __future__ import annotations

from enum import StrEnum


class Analyte(StrEnum):
    """Components of a complete blood count, named as in the canonical input."""

    HEMOGLOBIN = "hemoglobin"
    HEMATOCRIT = "hematocrit"
    RBC = "rbc"
    MCV = "mcv"
    WBC = "wbc"
    NEUTROPHILS = "neutrophils"
    NEUTROPHILS_PCT = "neutrophils_pct"
    BANDS_PCT = "bands_pct"
    LYMPHOCYTES = "lymphocytes"
    LYMPHOCYTES_PCT = "lymphocytes_pct"
    PLATELETS = "platelets"


class Condition(StrEnum):
    """The cytopenias the monitor keeps an episode for, one per (patient, condition)."""

    ANEMIA = "anemia"
    LEUKOPENIA = "leukopenia"
    NEUTROPENIA = "neutropenia"
    LYMPHOPENIA = "lymphopenia"
    THROMBOCYTOPENIA = "thrombocytopenia"
    PANCYTOPENIA = "pancytopenia"
    FEBRILE_NEUTROPENIA = "febrile_neutropenia"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


# How feeds spell sex, lower-cased. HL7 v2 PID-8 (table 0001: F female, M male, O other,
# U unknown, A ambiguous, N not applicable), FHIR AdministrativeGender (male, female, other,
# unknown) and the words written out by LIS exports in any case. Only female and male choose a
# sex-specific default limit; every other spelling, and any spelling not listed, is unknown sex:
# the lower limit applies and the alert says so (CLINICAL.md section 1).
SEX_SPELLINGS: dict[str, Sex | None] = {
    "f": Sex.FEMALE,
    "female": Sex.FEMALE,
    "woman": Sex.FEMALE,
    "m": Sex.MALE,
    "male": Sex.MALE,
    "man": Sex.MALE,
    "o": None,
    "other": None,
    "u": None,
    "unknown": None,
    "a": None,
    "ambiguous": None,
    "n": None,
    "not applicable": None,
}


def read_sex(text: str | None) -> Sex | None:
    """The sex a feed's spelling names (``"M"``, ``"Male"``, ``"FEMALE"``, ``"female"``), else
    None (unknown: other, unknown, ambiguous, not applicable, empty, or anything unlisted)."""
    if not text:
        return None
    return SEX_SPELLINGS.get(text.strip().lower())


# Analytes whose value is graded directly, and the condition each one drives.
# Anemia falls back to the red cell count when a result carries no hemoglobin (see detector).
CONDITION_OF: dict[Analyte, Condition] = {
    Analyte.HEMOGLOBIN: Condition.ANEMIA,
    Analyte.WBC: Condition.LEUKOPENIA,
    Analyte.NEUTROPHILS: Condition.NEUTROPENIA,
    Analyte.LYMPHOCYTES: Condition.LYMPHOPENIA,
    Analyte.PLATELETS: Condition.THROMBOCYTOPENIA,
}

# The three cell lines of pancytopenia: red (hemoglobin, else red cell count), white, platelets.
# Source: seed text "pancytopenia" (Cleveland Clinic) and CLINICAL.md section 1.
PANCYTOPENIA_LINES: tuple[tuple[Analyte, ...], ...] = (
    (Analyte.HEMOGLOBIN, Analyte.RBC),
    (Analyte.WBC,),
    (Analyte.PLATELETS,),
)

# Default adult lower limits of normal, in canonical units (see units.CANONICAL_UNIT), used only
# when the lab sends no reference range and no per-patient limit exists.
# Source: the seed patient-education texts (Cleveland Clinic, "Cytopenia" and "Pancytopenia"),
# as tabulated in CLINICAL.md section 1. Lymphocytes: no seed limit; 1.0 x10^9/L is a common
# adult LLN (CLINICAL.md section 1).
DEFAULT_LLN: dict[Analyte, dict[Sex, float]] = {
    Analyte.HEMOGLOBIN: {Sex.FEMALE: 12.0, Sex.MALE: 13.0},
    Analyte.RBC: {Sex.FEMALE: 4.2, Sex.MALE: 4.7},
    Analyte.WBC: {Sex.FEMALE: 4.0, Sex.MALE: 4.0},
    Analyte.NEUTROPHILS: {Sex.FEMALE: 1.8, Sex.MALE: 1.8},
    Analyte.LYMPHOCYTES: {Sex.FEMALE: 1.0, Sex.MALE: 1.0},
    Analyte.PLATELETS: {Sex.FEMALE: 150.0, Sex.MALE: 150.0},
}

# How a value is named in a human-readable alert summary.
DISPLAY_NAME: dict[Analyte, str] = {
    Analyte.HEMOGLOBIN: "Hgb",
    Analyte.HEMATOCRIT: "Hct",
    Analyte.RBC: "RBC",
    Analyte.MCV: "MCV",
    Analyte.WBC: "WBC",
    Analyte.NEUTROPHILS: "ANC",
    Analyte.NEUTROPHILS_PCT: "neutrophils %",
    Analyte.BANDS_PCT: "bands %",
    Analyte.LYMPHOCYTES: "ALC",
    Analyte.LYMPHOCYTES_PCT: "lymphocytes %",
    Analyte.PLATELETS: "PLT",
}
