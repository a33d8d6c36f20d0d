"""Settings come from MONITOR_* variables, and a wrong one is named at start."""

from __future__ import annotations

from pathlib import Path

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
    assert settings.detector.hysteresis is True


def test_hysteresis_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONITOR_HYSTERESIS", "false")
    monkeypatch.setenv("MONITOR_RCV_Z", "1.96")
    settings = MonitorSettings()
    assert settings.detector.hysteresis is False
    assert settings.detector.rcv_z == 1.96


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
        ("MONITOR_HYSTERESIS", "maybe"),
        ("MONITOR_RCV_Z", "0"),
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


# --- Kafka TLS and SASL (docs/secure-kafka.md) -----------------------------------------------

SECRET = "s3cret-Kx9!do-not-print"


def _sasl_env(monkeypatch: pytest.MonkeyPatch, **overrides: str | None) -> None:
    values: dict[str, str | None] = {
        "MONITOR_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "MONITOR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "MONITOR_KAFKA_SASL_USERNAME": "monitor",
        "MONITOR_KAFKA_SASL_PASSWORD": SECRET,
        **overrides,
    }
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def _error_for(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(describe_settings_error, str(ValidationError)) for the current environment."""
    with pytest.raises(ValidationError) as caught:
        MonitorSettings()
    return describe_settings_error(caught.value), str(caught.value)


def test_kafka_security_defaults_to_plaintext() -> None:
    settings = MonitorSettings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_ssl_check_hostname is True
    assert settings.kafka_sasl_password_value() is None


def test_sasl_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    _sasl_env(monkeypatch)
    settings = MonitorSettings()
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-256"
    assert settings.kafka_sasl_username == "monitor"
    secret = settings.kafka_sasl_password_value()
    assert secret is not None
    assert secret.get_secret_value() == SECRET


def test_password_file_is_read_at_start_without_its_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "kafka-password"
    path.write_text(f"{SECRET}\r\n")
    _sasl_env(
        monkeypatch, MONITOR_KAFKA_SASL_PASSWORD=None, MONITOR_KAFKA_SASL_PASSWORD_FILE=str(path)
    )
    settings = MonitorSettings()
    path.write_text("changed later")  # read once, at start
    secret = settings.kafka_sasl_password_value()
    assert secret is not None
    assert secret.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"MONITOR_KAFKA_SASL_MECHANISM": None}, "MONITOR_KAFKA_SASL_MECHANISM"),
        ({"MONITOR_KAFKA_SASL_MECHANISM": "GSSAPI"}, "MONITOR_KAFKA_SASL_MECHANISM"),
        ({"MONITOR_KAFKA_SASL_USERNAME": None}, "MONITOR_KAFKA_SASL_USERNAME"),
        ({"MONITOR_KAFKA_SASL_PASSWORD": None}, "MONITOR_KAFKA_SASL_PASSWORD"),
        ({"MONITOR_KAFKA_SASL_PASSWORD": ""}, "MONITOR_KAFKA_SASL_PASSWORD"),
        ({"MONITOR_KAFKA_SECURITY_PROTOCOL": "TLS"}, "MONITOR_KAFKA_SECURITY_PROTOCOL"),
        # SASL settings with a protocol that ignores them: the operator believes SASL is on.
        ({"MONITOR_KAFKA_SECURITY_PROTOCOL": "SSL"}, "MONITOR_KAFKA_SASL_MECHANISM"),
        ({"MONITOR_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "MONITOR_KAFKA_SSL_CAFILE"),
        ({"MONITOR_KAFKA_SSL_CHECK_HOSTNAME": "maybe"}, "MONITOR_KAFKA_SSL_CHECK_HOSTNAME"),
        # A valid password but another setting wrong: still never printed.
        ({"MONITOR_WEB_PORT": "99999"}, "MONITOR_WEB_PORT"),
    ],
)
def test_a_wrong_kafka_security_setting_is_named_without_the_password(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str | None], variable: str
) -> None:
    _sasl_env(monkeypatch, **overrides)
    described, raw = _error_for(monkeypatch)
    assert described.startswith(f"invalid setting {variable}:"), described
    assert SECRET not in described
    assert SECRET not in raw


def test_password_and_password_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET)
    _sasl_env(monkeypatch, MONITOR_KAFKA_SASL_PASSWORD_FILE=str(path))
    described, raw = _error_for(monkeypatch)
    assert described == (
        "invalid setting MONITOR_KAFKA_SASL_PASSWORD: set it or "
        "MONITOR_KAFKA_SASL_PASSWORD_FILE, not both"
    )
    assert SECRET not in raw


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_password_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "pw"
    path.write_text(content)
    _sasl_env(
        monkeypatch, MONITOR_KAFKA_SASL_PASSWORD=None, MONITOR_KAFKA_SASL_PASSWORD_FILE=str(path)
    )
    described, _ = _error_for(monkeypatch)
    assert described == "invalid setting MONITOR_KAFKA_SASL_PASSWORD_FILE: the file is empty"


def test_an_unreadable_password_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _sasl_env(
        monkeypatch,
        MONITOR_KAFKA_SASL_PASSWORD=None,
        MONITOR_KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "missing"),
    )
    described, _ = _error_for(monkeypatch)
    assert described == (
        "invalid setting MONITOR_KAFKA_SASL_PASSWORD_FILE: no readable file at that path"
    )


def test_tls_files_with_a_plaintext_protocol_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("MONITOR_KAFKA_SSL_CAFILE", str(ca))
    described, _ = _error_for(monkeypatch)
    assert described == (
        "invalid setting MONITOR_KAFKA_SSL_CAFILE: only used when "
        "MONITOR_KAFKA_SECURITY_PROTOCOL is SSL or SASL_SSL"
    )


def test_a_key_file_needs_its_certificate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    monkeypatch.setenv("MONITOR_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("MONITOR_KAFKA_SSL_KEYFILE", str(key))
    described, _ = _error_for(monkeypatch)
    assert described == "invalid setting MONITOR_KAFKA_SSL_CERTFILE: required with a key file"


def test_load_settings_never_prints_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.settings import load_settings

    _sasl_env(monkeypatch, MONITOR_KAFKA_SASL_USERNAME=None)
    with pytest.raises(SystemExit) as caught:
        load_settings()
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert "invalid setting MONITOR_KAFKA_SASL_USERNAME: required when" in captured.err
    assert SECRET not in captured.err + captured.out


# --- Dashboard pseudonyms (docs/dashboard.md) -------------------------------------------------


def test_pseudonym_key_is_optional_and_trimmed_like_the_bridge_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert MonitorSettings().pseudonym_key is None
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "  pseudonym-key-0123456789\n")
    key = MonitorSettings().pseudonym_key
    assert key is not None
    assert key.get_secret_value() == "pseudonym-key-0123456789"
    assert "pseudonym-key" not in repr(MonitorSettings())
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "   ")
    assert MonitorSettings().pseudonym_key is None  # blank is unset: ids fully masked


def test_a_short_pseudonym_key_is_named_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    short = "key-15-chars-xy"
    assert len(short) == 15
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", f"  {short}  ")  # 19 before trimming
    described, raw = _error_for(monkeypatch)
    assert described.startswith("invalid setting MONITOR_PSEUDONYM_KEY: must be at least 16")
    assert short not in described + raw
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "k" * 16)
    assert MonitorSettings().pseudonym_key is not None
