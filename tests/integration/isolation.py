"""Worker settings that keep a test's topics apart from every other test's on the shared broker.

A worker creates all of its input topics (results, HL7 v2, FHIR, treatments, vitals) with its
own partition count, and refuses to start if one already exists with another count: a test that
renamed only some of them would depend on which test ran first.
"""

from __future__ import annotations

FEEDS = ("results", "hl7v2", "fhir", "treatments", "vitals", "alerts", "dlq", "summaries")


def topic_names(name: str) -> dict[str, str]:
    """feed -> topic name, all prefixed by ``name``."""
    return {feed: f"{name}.{feed}" for feed in FEEDS}


def isolated_env(name: str) -> dict[str, str]:
    """``MONITOR_*`` variables giving a worker its own consumer group and topics."""
    return {
        "MONITOR_APP_ID": name,
        **{f"MONITOR_{feed.upper()}_TOPIC": topic for feed, topic in topic_names(name).items()},
    }
