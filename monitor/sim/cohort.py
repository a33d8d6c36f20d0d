"""A deterministic synthetic cohort of chemotherapy patients, published as a lab feed would.

The simulator produces the canonical CBC JSON messages (one per result) that the monitor consumes,
with the mess a real feed has: unit aliases that differ between labs, lab-supplied lower limits on
some results, percent differentials instead of an absolute neutrophil count, partial panels,
preliminary results followed by the final one, corrections, redeliveries, late results and a
handful of malformed messages. The same ``CohortSpec`` always yields byte-identical messages.

Each patient's lab sends in one format: canonical JSON (the ``results`` feed), HL7 v2 ORU^R01
(``hl7v2``) or a FHIR R4 DiagnosticReport (``fhir``), in the shares the spec asks for; all of
that patient's results, redeliveries and late results included, go out in it. With ``context``
the cohort also sends chemotherapy doses (``treatments``) and temperatures (``vitals``).

This module assembles the cohort; the parts are the sibling modules: ``physiology`` (patients
and their counts over each cycle), ``specimens`` (draws, and the plan of preliminary, corrected
and late results), ``labs`` and ``rendering`` (how each lab writes a result, in its format),
``context`` (doses and temperatures), ``messages`` (what is published) and ``checks`` (reading
the feed back). One random stream, seeded by ``CohortSpec.seed``, is drawn in a fixed order:
patients, specimens, plan, then publication times, redeliveries and malformed messages.

Standard library plus the monitor's LOINC and unit tables (for the HL7 v2 and FHIR encodings in
``monitor.sim.hl7v2_encoding`` and ``monitor.sim.fhir_encoding``): it runs in tests, in the CLI
and in benchmarks without a broker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from monitor.sim.context import context_drafts
from monitor.sim.messages import Draft, SimMessage, Topic
from monitor.sim.physiology import make_patients
from monitor.sim.rendering import MALFORMED_VARIANTS, Encoder, break_result, render
from monitor.sim.specimens import count_at_rate, draw_specimens, make_plan, next_specimen_of

__all__ = ["CohortSpec", "ending_yesterday", "simulate_cohort"]


@dataclass(frozen=True)
class CohortSpec:
    """What to simulate. Rates are fractions of the number of specimens in the cohort."""

    seed: int = 7
    patients: int = 40
    days: int = 42
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    redelivery_rate: float = 0.03
    late_rate: float = 0.03
    malformed_rate: float = 0.02
    hl7v2_share: float = 0.2  # of patients whose lab sends HL7 v2 ORU^R01
    fhir_share: float = 0.2  # of patients whose lab sends FHIR R4 DiagnosticReports
    context: bool = True  # also send chemotherapy doses and temperatures

    def __post_init__(self) -> None:
        if self.patients < 0:
            raise ValueError("patients must be >= 0")
        if self.days < 1:
            raise ValueError("days must be >= 1")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must carry a time zone")
        for name in ("redelivery_rate", "late_rate", "malformed_rate", "hl7v2_share", "fhir_share"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.hl7v2_share + self.fhir_share > 1.0:
            raise ValueError("hl7v2_share + fhir_share must not exceed 1")


def ending_yesterday(spec: CohortSpec, now: datetime) -> CohortSpec:
    """``spec`` moved so that its ``days`` end at 00:00 UTC of the day before ``now``.

    ``start`` becomes today's UTC midnight (of ``now``) minus ``spec.days + 1`` days; nothing
    else changes. The cohort's last events (results of day ``days``, the temperatures after
    them) fall within the day after its end, so all of them are dated before ``now`` (a result
    dated later than its receipt is dead-lettered as ``collected_in_future``), and the patients
    dosed in the last weeks are in or near their nadir window today, as a ward would see them.
    The same spec and date always give the same cohort. Raises ValueError if ``now`` carries no
    time zone.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must carry a time zone")
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return replace(spec, start=today - timedelta(days=spec.days + 1))


def _lab_formats(spec: CohortSpec) -> list[Topic]:
    """The feed each patient's lab sends on, by patient index: exact shares, then shuffled.

    A random stream of its own, so the shares change formats but never the results themselves.
    """
    n = spec.patients
    hl7 = round(spec.hl7v2_share * n)
    fhir = min(n - hl7, round(spec.fhir_share * n))
    shares: tuple[tuple[Topic, int], ...] = (
        ("hl7v2", hl7),
        ("fhir", fhir),
        ("results", n - hl7 - fhir),
    )
    formats = [topic for topic, share in shares for _ in range(share)]
    random.Random(f"{spec.seed}:lab-formats").shuffle(formats)
    return formats


def simulate_cohort(spec: CohortSpec = CohortSpec()) -> list[SimMessage]:
    """All messages of the cohort, sorted by publication time (``sent_at_day``).

    Every specimen is published once, as a ``result`` or (about ``late_rate`` of them) as ``late``;
    a few go out first as ``preliminary`` and then ``final`` under the same result id, and one or
    two finals are later ``corrected``. On top come ``redelivery`` copies (byte-identical to an
    earlier message) and ``malformed`` messages cycling through ``MALFORMED_VARIANTS`` (canonical
    JSON on the ``results`` feed, whatever the patient's lab format). With ``spec.context``,
    chemotherapy doses and temperatures follow on the ``treatments`` and ``vitals`` feeds; they
    come from a random stream of their own, so the lab results do not depend on them.
    """
    rng = random.Random(spec.seed)
    patients = make_patients(spec.patients, rng)
    specimens = draw_specimens(spec.days, patients, rng)
    plan = make_plan(spec.late_rate, specimens, rng)
    encoder = Encoder(spec.start, _lab_formats(spec))

    drafts: list[Draft] = []
    first_sent: dict[int, float] = {}
    published: list[tuple[int, Draft]] = []  # the authoritative message of each specimen
    for i, s in enumerate(specimens):
        if i in plan.late:
            continue  # published below, once every on-time result has its publication time
        sent = first_sent[i] = s.day + rng.uniform(0.5, 3.0) / 24
        if i in plan.preliminary:
            # The analyzer's numbers go out first; the final adds the reviewed differential.
            partial = ("hemoglobin", "wbc", "platelets", "rbc", "mcv")
            prelim = render(spec.start, s, "preliminary", analytes=partial)
            drafts.append(encoder.draft(s, prelim, "result", sent))
            sent += rng.uniform(1.0, 4.0) / 24
        if i in plan.corrected:
            # The first final was wrong (clumped platelets, or a transcription slip in Hgb);
            # the correction sends the measured value.
            wrong = (
                {"platelets": s.values["platelets"] * 0.55}
                if plan.corrected.index(i) % 2 == 0
                else {"hemoglobin": s.values["hemoglobin"] + 1.2}
            )
            drafts.append(encoder.draft(s, render(spec.start, s, overrides=wrong), "result", sent))
            sent += rng.uniform(0.25, 1.25)
            drafts.append(encoder.draft(s, render(spec.start, s, "corrected"), "result", sent))
        else:
            drafts.append(encoder.draft(s, render(spec.start, s), "result", sent))
        published.append((i, drafts[-1]))
    for i in sorted(plan.late):
        s = specimens[i]
        newer_sent = first_sent[next_specimen_of(specimens, i)]
        sent = s.day + rng.uniform(max(1.0, newer_sent - s.day + 0.02), 3.0)
        drafts.append(encoder.draft(s, render(spec.start, s), "late", sent))
        published.append((i, drafts[-1]))

    for draft in rng.sample(
        drafts, min(len(drafts), count_at_rate(spec.redelivery_rate, len(specimens)))
    ):
        later = draft.sent_at_day + rng.uniform(1.0, 360.0) / (24 * 60)
        drafts.append(
            Draft(
                draft.key,
                draft.value,
                "redelivery",
                later,
                topic=draft.topic,
                canonical=draft.canonical,
            )
        )
    # Malformed messages are broken copies of full panels, so every variant has a count to break.
    sources = [pair for pair in published if specimens[pair[0]].panel == "full"]
    for k in range(count_at_rate(spec.malformed_rate, len(specimens)) if sources else 0):
        variant = MALFORMED_VARIANTS[k % len(MALFORMED_VARIANTS)]
        i, source = sources[rng.randrange(len(sources))]
        value, drop_key = break_result(variant, render(spec.start, specimens[i]), rng)
        later = source.sent_at_day + rng.uniform(1.0, 600.0) / (24 * 3600)
        drafts.append(Draft(None if drop_key else source.key, value, "malformed", later))
    if spec.context:
        drafts.extend(
            context_drafts(spec.seed, spec.days, spec.start, patients, specimens, plan.late)
        )

    for seq, draft in enumerate(drafts):
        draft.seq = seq
    drafts.sort(key=lambda d: (d.sent_at_day, d.seq))
    return [
        SimMessage(d.key, d.value, d.kind, round(d.sent_at_day, 6), d.topic, d.canonical)
        for d in drafts
    ]
