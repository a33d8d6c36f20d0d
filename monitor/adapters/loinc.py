"""LOINC codes of CBC components, checked with the name and the unit the feed sends with them.

Real feeds mislabel (CLINICAL.md section 3), so a code alone is not trusted: the unit must be
one the analyte can have, and a name, when sent, must not name a different analyte.
Source: LOINC (loinc.org) codes as listed in CLINICAL.md section 3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.clinical.analytes import Analyte
from monitor.clinical.units import is_known_unit


@dataclass(frozen=True, slots=True)
class LoincCode:
    code: str
    analyte: Analyte
    name: str  # LOINC short name, for messages


LOINC: dict[str, LoincCode] = {
    c.code: c
    for c in (
        LoincCode("6690-2", Analyte.WBC, "WBC # Bld Auto"),
        LoincCode("26464-8", Analyte.WBC, "WBC # Bld"),
        LoincCode("789-8", Analyte.RBC, "RBC # Bld Auto"),
        LoincCode("26453-1", Analyte.RBC, "RBC # Bld"),
        LoincCode("718-7", Analyte.HEMOGLOBIN, "Hgb Bld-mCnc"),
        LoincCode("59260-0", Analyte.HEMOGLOBIN, "Hgb Bld-sCnc"),
        LoincCode("4544-3", Analyte.HEMATOCRIT, "Hct VFr Bld Auto"),
        LoincCode("787-2", Analyte.MCV, "MCV RBC Auto"),
        LoincCode("777-3", Analyte.PLATELETS, "Platelet # Bld Auto"),
        LoincCode("26515-7", Analyte.PLATELETS, "Platelet # Bld"),
        LoincCode("751-8", Analyte.NEUTROPHILS, "Neutrophils # Bld Auto"),
        LoincCode("753-4", Analyte.NEUTROPHILS, "Neutrophils # Bld Manual"),
        LoincCode("26499-4", Analyte.NEUTROPHILS, "Neutrophils # Bld"),
        LoincCode("770-8", Analyte.NEUTROPHILS_PCT, "Neutrophils/leuk NFr Bld Auto"),
        LoincCode("23761-0", Analyte.NEUTROPHILS_PCT, "Neutrophils/leuk NFr Bld Manual"),
        LoincCode("26511-6", Analyte.NEUTROPHILS_PCT, "Neutrophils/leuk NFr Bld"),
        LoincCode("764-1", Analyte.BANDS_PCT, "Bands/leuk NFr Bld Manual"),
        LoincCode("26508-2", Analyte.BANDS_PCT, "Bands/leuk NFr Bld"),
        LoincCode("731-0", Analyte.LYMPHOCYTES, "Lymphocytes # Bld Auto"),
        LoincCode("26478-8", Analyte.LYMPHOCYTES_PCT, "Lymphocytes/leuk NFr Bld"),
        # Not in CLINICAL.md's list, but the usual automated lymphocyte % code (LOINC 736-9).
        LoincCode("736-9", Analyte.LYMPHOCYTES_PCT, "Lymphocytes/leuk NFr Bld Auto"),
        LoincCode("737-7", Analyte.LYMPHOCYTES_PCT, "Lymphocytes/leuk NFr Bld Manual"),
    )
}

# Panel codes: a report or OBR with one of these is a CBC; their rows are the components.
CBC_PANELS: dict[str, str] = {
    "58410-2": "CBC panel - Blood by Automated count",
    "57021-8": "CBC W Auto Differential panel - Blood",
}

# Words by which feeds name each analyte. A name that matches another analyte's words and none
# of its own contradicts the code.
_NAME_WORDS: dict[Analyte, tuple[str, ...]] = {
    Analyte.WBC: ("wbc", "leukocyte", "white"),
    Analyte.RBC: ("rbc", "erythrocyte", "red blood cell", "red cell"),
    Analyte.HEMOGLOBIN: ("hgb", "hemoglobin", "haemoglobin", "hb"),
    Analyte.HEMATOCRIT: ("hct", "hematocrit", "haematocrit", "packed cell"),
    Analyte.MCV: ("mcv", "mean corpuscular volume", "mean cell volume"),
    Analyte.PLATELETS: ("plt", "platelet", "thrombocyte"),
    Analyte.NEUTROPHILS: ("neut", "anc", "neutrophil", "granulocyte", "segs", "poly"),
    Analyte.NEUTROPHILS_PCT: ("neut", "neutrophil", "granulocyte", "segs", "poly"),
    Analyte.BANDS_PCT: ("band", "stab"),
    Analyte.LYMPHOCYTES: ("lymph", "alc"),
    Analyte.LYMPHOCYTES_PCT: ("lymph",),
}


class CodeMismatchError(ValueError):
    """Code, name and unit disagree; the message names the code, never a value."""


class UnknownUnitError(CodeMismatchError):
    """The unit is known for no CBC analyte (``bananas``): not a disagreement with the code."""


def _mentions(name: str, words: tuple[str, ...]) -> bool:
    text = name.lower()
    return any(re.search(rf"(?<![a-z]){re.escape(w)}", text) for w in words)


def resolve(
    code: str,
    unit: str,
    name: str | None = None,
    local_codes: Mapping[str, Analyte] | None = None,
) -> Analyte | None:
    """The analyte a coded row carries, or None when it is not a CBC component.

    ``local_codes`` maps a site's own codes to analytes and wins over LOINC. Raises
    CodeMismatchError when the unit cannot belong to the analyte (UnknownUnitError, a subclass,
    when no analyte has that unit), or the name names another analyte and not this one.
    """
    if local_codes is not None and code in local_codes:
        analyte = local_codes[code]
    elif code in LOINC:
        analyte = LOINC[code].analyte
    else:
        return None
    if not is_known_unit(analyte, unit):
        if not any(is_known_unit(other, unit) for other in Analyte):
            raise UnknownUnitError(f"code {code} ({analyte}) sent with a unit that is not known")
        raise CodeMismatchError(f"code {code} ({analyte}) sent with a unit {analyte} cannot have")
    if name and not _mentions(name, _NAME_WORDS[analyte]):
        others = [a for a, words in _NAME_WORDS.items() if a != analyte and _mentions(name, words)]
        if others:
            raise CodeMismatchError(f"code {code} ({analyte}) sent with the name of {others[0]}")
    return analyte
