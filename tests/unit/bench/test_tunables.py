"""Each tunable of ``make bench`` changes exactly the one setting it names: a misspelt variable
would silently measure the defaults again."""

from __future__ import annotations

import pytest

from monitor.bench.tunables import VARIATIONS, Variation
from monitor.settings import MonitorSettings


@pytest.mark.parametrize("variation", VARIATIONS, ids=[v.label for v in VARIATIONS])
def test_a_variation_changes_the_settings_it_names(
    variation: Variation, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = MonitorSettings().model_dump()
    for name, value in variation.settings.items():
        monkeypatch.setenv(name, value)
    changed = {k for k, v in MonitorSettings().model_dump().items() if defaults[k] != v}
    expected = {name.removeprefix("MONITOR_").lower() for name in variation.settings}
    assert changed == expected


def test_the_defaults_are_measured_first_and_last() -> None:
    assert VARIATIONS[0].settings == {}
    assert VARIATIONS[-1].settings == {}
    assert len({v.label for v in VARIATIONS}) == len(VARIATIONS)
