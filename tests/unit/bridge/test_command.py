"""``cbc-monitor bridge``: it refuses to start without what it needs (exit 2), saying why."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from monitor.cli import build_parser, main


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITOR_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("MONITOR_PAGERDUTY_ROUTING_KEY", raising=False)


@pytest.mark.parametrize("output", ["alertmanager", "pagerduty"])
def test_no_pseudonym_key_exits_2_with_a_clear_message(
    output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bridge", output, "--url", "http://127.0.0.1:9/"]) == 2
    err = capsys.readouterr().err
    assert "no pseudonym key" in err
    assert "MONITOR_PSEUDONYM_KEY" in err


def test_a_short_key_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key"
    key.write_text("short\n")
    args = ["bridge", "alertmanager", "--url", "http://127.0.0.1:9", "--pseudonym-key-file"]
    assert main([*args, str(key)]) == 2
    assert "shorter than 16" in capsys.readouterr().err


def test_pagerduty_without_a_routing_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "unit-test-pseudonym-key-0123456789")
    assert main(["bridge", "pagerduty", "--url", "http://127.0.0.1:9/enqueue"]) == 2
    assert "MONITOR_PAGERDUTY_ROUTING_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["bridge", "alertmanager"],
        ["bridge", "alertmanager", "--url", "alertmanager:9093"],
        ["bridge", "alertmanager", "--url", "http://am:9093", "--resend-interval", "0"],
        ["bridge", "fax", "--url", "http://am:9093"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_defaults_per_output() -> None:
    parser = build_parser()
    manager = parser.parse_args(["bridge", "alertmanager", "--url", "http://am:9093"])
    assert (manager.group, manager.resend_interval) == ("cbc-monitor-bridge", 60.0)
    pager = parser.parse_args(
        [
            "bridge",
            "pagerduty",
            "--url",
            "https://pd/v2/enqueue",
            "--group",
            "g",
            "--resend-interval",
            "5",
        ]
    )
    assert (pager.group, pager.resend_interval, pager.routing_key_file) == ("g", 5.0, None)


def test_metrics_server_defaults_and_port_0() -> None:
    parser = build_parser()
    args = parser.parse_args(["bridge", "pagerduty", "--url", "https://pd/v2/enqueue"])
    assert (args.metrics_host, args.metrics_port) == ("0.0.0.0", 9464)
    args = parser.parse_args(
        ["bridge", "alertmanager", "--url", "http://am:9093", "--metrics-port", "0"]
    )
    assert args.metrics_port == 0  # no metrics server


@pytest.mark.parametrize("port", ["-1", "65536", "metrics"])
def test_a_bad_metrics_port_exits_2(port: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", "alertmanager", "--url", "http://am:9093", "--metrics-port", port])
    assert exit_info.value.code == 2


def test_a_metrics_port_in_use_exits_1_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before Kafka is touched: the unreachable broker below is never contacted."""
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "unit-test-pseudonym-key-0123456789")
    monkeypatch.setenv("MONITOR_BROKER_URL", "kafka://127.0.0.1:9")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        argv = ["bridge", "alertmanager", "--url", "http://127.0.0.1:9"]
        assert main([*argv, "--metrics-host", "127.0.0.1", "--metrics-port", port]) == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err


def test_an_unusable_tls_file_exits_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CA file that is not PEM passes the settings check but not the TLS context: an invalid
    setting (exit 2, like the other tools), not a traceback."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "unit-test-pseudonym-key-0123456789")
    monkeypatch.setenv("MONITOR_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("MONITOR_KAFKA_SSL_CAFILE", str(bogus))
    argv = ["bridge", "alertmanager", "--url", "http://127.0.0.1:9", "--metrics-port", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cbc-monitor: invalid setting MONITOR_KAFKA_SSL_CAFILE: "), err
    assert "Traceback" not in err


def test_a_bridge_that_fails_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """E.g. its keep-alive died: a non-zero exit, so that the supervisor restarts it."""
    from monitor.bridge import runner

    async def failing(self: runner.Bridge) -> None:
        raise runner.BridgeFailedError("the alertmanager keep-alive failed (ValueError)")

    monkeypatch.setattr(runner.Bridge, "run", failing)
    monkeypatch.setenv("MONITOR_PSEUDONYM_KEY", "unit-test-pseudonym-key-0123456789")
    argv = ["bridge", "alertmanager", "--url", "http://127.0.0.1:9", "--metrics-port", "0"]
    assert main(argv) == 1
    assert "keep-alive failed (ValueError)" in capsys.readouterr().err
