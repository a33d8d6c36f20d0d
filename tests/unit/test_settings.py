"""Settings come from MONITOR_* variables, and a wrong one is named at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from monitor.settings import MonitorSettings, describe_settings_error


def test_defaults() -> None:
    settings = MonitorSettings()
    assert settings.broker_url == "kafka://localhost:9092"
    assert settings.results_topic == "lab.cbc.results"
    assert settings.alerts_topic == "lab.cbc.alerts"
    assert settings.dlq_topic == "lab.cbc.results.dlq"
    assert settings.detector.ctcae_version == "5.0"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_BROKER_URL", "kafka://k1:9092;kafka://k2:9093")
    monkeypatch.setenv("MONITOR_CTCAE_VERSION", "6.0")
    monkeypatch.setenv("MONITOR_PAGE_GRADE", "2")
    monkeypatch.setenv("MONITOR_HISTORY_MAX_RESULTS", "20")
    settings = MonitorSettings()
    assert settings.bootstrap_servers == ["k1:9092", "k2:9093"]
    assert settings.detector.ctcae_version == "6.0"
    assert settings.detector.page_grade == 2
    assert settings.detector.history_max_results == 20


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MONITOR_BROKER_URL", "localhost:9092"),
        ("MONITOR_CTCAE_VERSION", "4.03"),
        ("MONITOR_PARTITIONS", "zero"),
        ("MONITOR_WEB_PORT", "70000"),
        ("MONITOR_PAGE_GRADE", "5"),
        ("MONITOR_STORE", "redis"),
        ("MONITOR_RESULTS_TOPIC", "bad topic"),
    ],
)
def test_a_wrong_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        MonitorSettings()
    message = describe_settings_error(caught.value)
    assert message.startswith(f"invalid setting {variable}:")


def test_load_settings_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.settings import load_settings

    monkeypatch.setenv("MONITOR_WEB_PORT", "not-a-port")
    with pytest.raises(SystemExit) as caught:
        load_settings()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid setting MONITOR_WEB_PORT" in err
    assert "not-a-port" not in err
