"""TLS and SASL settings become the right client arguments, and the password never shows.

Also home of :func:`make_pki`, the throwaway certificates (openssl CLI) that the integration
tests in tests/integration/test_secure_kafka.py use too.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import faust
import pytest
from aiokafka import errors as kafka_errors
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from monitor.kafka.security import (
    KafkaConnectError,
    KafkaSecurityError,
    aiokafka_security_kwargs,
    check_connection,
    describe_failure,
    faust_credentials,
    ssl_context,
)
from monitor.settings import MonitorSettings
from monitor.stream.app import faust_settings

PASSWORD = "pw-Zq8!never-shown"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server and client certificates
    server_cert: Path  # for 127.0.0.1 and localhost
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA: "the wrong certificate"
    other_key: Path  # its key, which matches none of the certificates above


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("the openssl command line tool is needed to make test certificates")
    done = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"openssl {args[0]} failed: {done.stderr.strip()}")


def _new_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN=cbc-monitor {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _signed(
    directory: Path, name: str, ca: tuple[Path, Path], extensions: str
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}.{ext}" for ext in ("pem", "key", "csr"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", cert.name, "-days", "2", "-extfile", ext_file.name,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client one, and an unrelated CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _new_ca(directory, "ca")
    other = _new_ca(directory, "other-ca")
    server = _signed(
        directory,
        "server",
        ca,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client = _signed(directory, "client", ca, "extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other[0], other[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def sasl_settings(protocol: str = "SASL_SSL", **extra: object) -> MonitorSettings:
    return MonitorSettings.model_validate(
        {
            "kafka_security_protocol": protocol,
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "monitor",
            "kafka_sasl_password": PASSWORD,
            **extra,
        }
    )


def test_plaintext_by_default() -> None:
    settings = MonitorSettings()
    assert aiokafka_security_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None
    assert faust_settings(settings)["broker_credentials"] is None


def test_tls_trusts_only_the_named_ca_and_checks_host_names(pki: Pki) -> None:
    settings = MonitorSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    kwargs = aiokafka_security_kwargs(settings)
    assert kwargs["security_protocol"] == "SSL"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert subjects == [{"commonName": "cbc-monitor ca"}], "system CAs must not be trusted too"


def test_host_name_check_can_be_turned_off(pki: Pki) -> None:
    settings = MonitorSettings(
        kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca, kafka_ssl_check_hostname=False
    )
    context = ssl_context(settings)
    assert context is not None
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED, "the chain is still verified"


def test_client_certificate_for_mutual_tls(pki: Pki) -> None:
    settings = MonitorSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki.ca,
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.client_key,
    )
    assert ssl_context(settings) is not None


def test_a_key_that_does_not_match_the_certificate_is_named(pki: Pki) -> None:
    settings = MonitorSettings(
        kafka_security_protocol="SSL",
        kafka_ssl_certfile=pki.client_cert,
        kafka_ssl_keyfile=pki.other_key,
    )
    with pytest.raises(KafkaSecurityError, match="MONITOR_KAFKA_SSL_CERTFILE"):
        aiokafka_security_kwargs(settings)


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    settings = MonitorSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=bogus)
    with pytest.raises(KafkaSecurityError, match=r"^MONITOR_KAFKA_SSL_CAFILE: "):
        ssl_context(settings)


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_kwargs_and_faust_credentials_agree(protocol: str, pki: Pki) -> None:
    extra = {"kafka_ssl_cafile": pki.ca} if protocol == "SASL_SSL" else {}
    settings = sasl_settings(protocol, **extra)
    kwargs = aiokafka_security_kwargs(settings)
    assert kwargs["security_protocol"] == protocol
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "monitor"
    assert kwargs["sasl_plain_password"] == PASSWORD
    assert isinstance(kwargs.get("ssl_context"), ssl.SSLContext) == (protocol == "SASL_SSL")

    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust hands its own aiokafka clients is what ours get.
    faust_kwargs = credentials_to_aiokafka_auth(credentials)
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert faust_kwargs[key] == kwargs[key], key
    assert faust_kwargs["sasl_plain_password"] == PASSWORD
    assert (faust_kwargs["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")
    assert faust_settings(settings)["broker_credentials"] is not None


def test_tls_only_gives_faust_ssl_credentials(pki: Pki) -> None:
    settings = MonitorSettings(kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_the_password_is_in_no_repr(pki: Pki) -> None:
    settings = sasl_settings("SASL_SSL", kafka_ssl_cafile=pki.ca)
    kwargs = aiokafka_security_kwargs(settings)
    credentials = faust_credentials(settings)
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(kwargs), str(kwargs)]
    shown += [repr(credentials), f"{kwargs}", f"{credentials}"]
    for text in shown:
        assert PASSWORD not in text
    assert "**********" in repr(kwargs)


def test_password_from_a_file_reaches_the_clients(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    settings = MonitorSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="monitor",
        kafka_sasl_password_file=secret,
    )
    assert aiokafka_security_kwargs(settings)["sasl_plain_password"] == PASSWORD
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.password == PASSWORD
    assert PASSWORD not in repr(settings)


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    exc.verify_code, exc.verify_message = code, message
    return exc


def _ssl_error(reason: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason
    return exc


SSL_KW = {"security_protocol": "SSL"}
SASL_KW = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_plain_password": PASSWORD,
}


@pytest.mark.parametrize(
    ("exc", "security", "expected"),
    [
        (
            _verify_error(20, "unable to get local issuer certificate"),
            SSL_KW,
            "TLS handshake failed: certificate verify failed: unable to get local issuer "
            "certificate (check MONITOR_KAFKA_SSL_CAFILE)",
        ),
        (
            _verify_error(62, "Hostname mismatch"),
            SSL_KW,
            "not valid for that host name (check the broker address, or "
            "MONITOR_KAFKA_SSL_CHECK_HOSTNAME)",
        ),
        (
            _ssl_error("WRONG_VERSION_NUMBER"),
            SSL_KW,
            "the listener does not speak TLS (check MONITOR_KAFKA_SECURITY_PROTOCOL)",
        ),
        (
            _ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"),
            SSL_KW,
            "refused our client certificate (check MONITOR_KAFKA_SSL_CERTFILE",
        ),
        (
            kafka_errors.SaslAuthenticationFailed("Authentication failed"),
            SASL_KW,
            "SASL authentication failed (check MONITOR_KAFKA_SASL_USERNAME and the password)",
        ),
        (
            KeyError("v"),
            SASL_KW,
            "SASL authentication failed (check MONITOR_KAFKA_SASL_USERNAME and the password)",
        ),
        (
            kafka_errors.UnsupportedSaslMechanismError("no"),
            SASL_KW,
            "the broker does not offer SCRAM-SHA-256 (check MONITOR_KAFKA_SASL_MECHANISM)",
        ),
        (
            kafka_errors.KafkaConnectionError("Connection at 127.0.0.1:9 closed"),
            {"security_protocol": "PLAINTEXT"},
            "the broker closed the connection (does it want TLS or SASL? check "
            "MONITOR_KAFKA_SECURITY_PROTOCOL)",
        ),
        (
            kafka_errors.KafkaConnectionError("closed"),
            SASL_KW,
            "closed the connection while authenticating (check MONITOR_KAFKA_SASL_USERNAME",
        ),
        (ConnectionRefusedError(111, "Connection refused"), SSL_KW, "connection refused"),
        (TimeoutError(), SSL_KW, "no answer in time"),
        (socket.gaierror(-2, "Name or service not known"), SSL_KW, "unknown host name"),
    ],
)
def test_failures_become_one_clear_line(
    exc: BaseException, security: dict[str, str], expected: str
) -> None:
    message = describe_failure(exc, security)
    assert expected in message
    assert "\n" not in message
    assert PASSWORD not in message


@pytest.mark.asyncio
async def test_preflight_against_a_closed_port_fails_fast_naming_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(KafkaConnectError) as caught:
            await check_connection(
                [f"127.0.0.1:{port}"], {"security_protocol": "PLAINTEXT"}, wait_s=1.0
            )
    assert str(caught.value) == (
        f"cannot connect to Kafka at 127.0.0.1:{port}: "
        "connection refused (is the broker up, and is the address right?)"
    )
