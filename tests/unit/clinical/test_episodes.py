from __future__ import annotations

import pytest

from monitor.clinical.alert import Event
from monitor.clinical.episodes import next_event, pages


@pytest.mark.parametrize(
    ("current", "new", "event"),
    [
        (0, 0, None),
        (2, 2, None),
        (0, 1, "new"),
        (0, 4, "new"),
        (1, 3, "worsened"),
        (3, 1, "improved"),
        (3, 0, "resolved"),
    ],
)
def test_next_event(current: int, new: int, event: Event | None) -> None:
    assert next_event(current, new) == event


@pytest.mark.parametrize(
    ("event", "grade", "paged"),
    [
        ("new", 3, True),
        ("worsened", 4, True),
        ("new", 2, False),
        ("improved", 3, False),
        ("resolved", 0, False),
    ],
)
def test_pages_new_or_worse_at_the_page_grade(event: Event, grade: int, paged: bool) -> None:
    assert pages(event, grade, page_grade=3) is paged
