"""Parse throughput of the lab-feed adapters (HL7 v2 ORU^R01, FHIR R4) beside canonical JSON.

Each figure is parsing plus validation into a CBCResult, one CBC per message."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from monitor.adapters.fhir import parse_fhir
from monitor.adapters.hl7v2 import parse_oru
from monitor.clinical.model import parse_result
from monitor.sim.checks import clean_results
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.fhir_encoding import to_fhir
from monitor.sim.hl7v2_encoding import to_hl7v2


def sample_results(count: int = 500) -> list[dict[str, Any]]:
    """Simulated full-panel results in canonical form (the JSON-only cohort)."""
    spec = CohortSpec(seed=5, patients=60, hl7v2_share=0.0, fhir_share=0.0, context=False)
    results = [r for r in clean_results(simulate_cohort(spec)) if len(r["components"]) >= 6]
    return results[:count]


def _rate(parse: Callable[[bytes], object], messages: list[bytes], rounds: int = 3) -> float:
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        for message in messages:
            parse(message)
        best = max(best, len(messages) / (time.perf_counter() - started))
    return best


def measure_adapters() -> dict[str, tuple[float, int]]:
    """Messages per second (best of three rounds) and mean message size, per format."""
    results = sample_results()
    hl7 = [to_hl7v2(r) for r in results]
    fhir = [to_fhir(r) for r in results]
    canonical = [json.dumps(r).encode() for r in results]
    return {
        "hl7v2": (_rate(parse_oru, hl7), sum(map(len, hl7)) // len(hl7)),
        "fhir": (_rate(parse_fhir, fhir), sum(map(len, fhir)) // len(fhir)),
        "canonical json": (
            _rate(parse_result, canonical),
            sum(map(len, canonical)) // len(canonical),
        ),
    }
