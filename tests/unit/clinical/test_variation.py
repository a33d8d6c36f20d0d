"""The RCV arithmetic against the research note's independently computed table."""

from __future__ import annotations

import math

import pytest

from monitor.clinical.analytes import Analyte
from monitor.clinical.variation import VARIATION, NoiseModel, Variation, rcv, relative_change

# /tmp/research/rcv.md section 2 (rcv_check.py output), percent, Z = 1.65 and 1.96.
EXPECTED = {
    # analyte: (down 1.65, up 1.65, down 1.96, up 1.96)
    Analyte.HEMOGLOBIN: (-7.1, 7.1, -8.5, 8.5),
    Analyte.RBC: (-7.2, 7.2, -8.6, 8.6),
    Analyte.MCV: (-1.9, 1.9, -2.2, 2.2),
    Analyte.WBC: (-25.1, 33.4, -29.0, 40.9),
    Analyte.NEUTROPHILS: (-27.7, 38.3, -32.0, 47.0),
    Analyte.LYMPHOCYTES: (-23.9, 31.4, -27.7, 38.3),
    Analyte.PLATELETS: (-17.3, 20.9, -20.2, 25.3),
}


@pytest.mark.parametrize("analyte", sorted(EXPECTED))
def test_rcv_matches_the_research_table(analyte: Analyte) -> None:
    down65, up65, down96, up96 = EXPECTED[analyte]
    at65, at96 = rcv(VARIATION[analyte], 1.65), rcv(VARIATION[analyte], 1.96)
    assert at65.down * 100 == pytest.approx(down65, abs=0.05)
    assert at65.up * 100 == pytest.approx(up65, abs=0.05)
    assert at96.down * 100 == pytest.approx(down96, abs=0.05)
    assert at96.up * 100 == pytest.approx(up96, abs=0.05)


@pytest.mark.parametrize("analyte", [a for a, v in VARIATION.items() if v.log_normal])
def test_log_normal_limits_are_reciprocal(analyte: Analyte) -> None:
    limits = rcv(VARIATION[analyte])
    assert (1 + limits.up) * (1 + limits.down) == pytest.approx(1.0)


def test_every_figure_names_its_source_and_evidence() -> None:
    for variation in VARIATION.values():
        assert variation.cvi_source
        assert variation.evidence in ("V2", "NOT VERIFIED")
        assert variation.cva_used == pytest.approx(variation.cvi / 2)


def test_a_site_cva_replaces_the_default() -> None:
    site = Variation(12.5, "test", "V2", log_normal=True, floor=0.1, cva=20.0)
    assert rcv(site).up > rcv(VARIATION[Analyte.NEUTROPHILS]).up


def test_zero_is_clamped_to_the_floor() -> None:
    anc = VARIATION[Analyte.NEUTROPHILS]
    assert relative_change(anc, 0.0, 0.2) == pytest.approx(1.0)
    assert math.isfinite(relative_change(anc, 0.3, 0.0))


def test_z_must_be_positive() -> None:
    with pytest.raises(ValueError, match="z must be"):
        rcv(VARIATION[Analyte.WBC], 0)


def test_noise_model_knows_only_analytes_with_figures() -> None:
    noise = NoiseModel()
    assert noise.limits("neutrophils") is not None
    assert noise.limits("bands_pct") is None
