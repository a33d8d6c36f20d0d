"""How every Kafka client of the project connects: plaintext, TLS, SASL/SCRAM over either.

One place turns the ``MONITOR_KAFKA_*`` settings into what each client library wants:

* :func:`aiokafka_security_kwargs` for aiokafka producers, consumers and admin clients (the
  command line tools, ``create_topics``, the worker's preflight check);
* :func:`faust_credentials` for Faust's ``broker_credentials`` (the worker's own clients);
* :func:`check_connection`, the worker's preflight: one connection, authenticated like the
  real ones, whose failure becomes one line naming the setting to check (``describe_failure``).

The SASL password is only ever handed to the client library: :class:`SecurityKwargs` hides it
from ``repr`` and no message built here contains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import errors as kafka_errors
from aiokafka.conn import create_conn
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from faust.types.auth import CredentialsT

from monitor.settings import ENV_PREFIX, SASL_PROTOCOLS, SSL_PROTOCOLS, MonitorSettings

__all__ = [
    "KafkaConnectError",
    "KafkaSecurityError",
    "SecurityKwargs",
    "aiokafka_security_kwargs",
    "check_connection",
    "describe_failure",
    "faust_credentials",
    "ssl_context",
]

_CAFILE = f"{ENV_PREFIX}KAFKA_SSL_CAFILE"
_CERTFILE = f"{ENV_PREFIX}KAFKA_SSL_CERTFILE"
_KEYFILE = f"{ENV_PREFIX}KAFKA_SSL_KEYFILE"
_PROTOCOL = f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL"
_MECHANISM = f"{ENV_PREFIX}KAFKA_SASL_MECHANISM"
_CHECK_HOSTNAME = f"{ENV_PREFIX}KAFKA_SSL_CHECK_HOSTNAME"
_CREDENTIALS_HINT = f"check {ENV_PREFIX}KAFKA_SASL_USERNAME and the password"
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
_DEFAULT_PORT = "9092"
_TRANSIENT = (ConnectionRefusedError, socket.gaierror)  # retried by the preflight
_RETRY_S = 0.5


class KafkaSecurityError(ValueError):
    """The TLS files cannot be used (not PEM, key does not match the certificate, ...)."""


class KafkaConnectError(ConnectionError):
    """The preflight connection failed; the message is one line, safe to print."""


class SecurityKwargs(dict[str, Any]):
    """aiokafka keyword arguments whose ``repr`` never shows the SASL password."""

    def __repr__(self) -> str:
        shown = {k: ("**********" if k == "sasl_plain_password" else v) for k, v in self.items()}
        return f"SecurityKwargs({shown!r})"

    __str__ = __repr__


def ssl_context(settings: MonitorSettings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (``None`` otherwise).

    Trusts ``MONITOR_KAFKA_SSL_CAFILE`` (the system CAs when unset), presents the client
    certificate for mutual TLS when one is set, and checks the broker's host name unless
    ``MONITOR_KAFKA_SSL_CHECK_HOSTNAME=false``.

    :raises KafkaSecurityError: naming the variable whose file cannot be used.
    """
    if settings.kafka_security_protocol not in SSL_PROTOCOLS:
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        # Only that CA when one is named; the system's CAs otherwise.
        context: ssl.SSLContext = create_ssl_context(cafile=str(cafile) if cafile else None)
    except (ssl.SSLError, OSError):
        raise KafkaSecurityError(f"{_CAFILE}: not a PEM file of CA certificates") from None
    if settings.kafka_ssl_certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        try:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile), str(keyfile) if keyfile else None
            )
        except (ssl.SSLError, OSError):
            raise KafkaSecurityError(
                f"{_CERTFILE} / {_KEYFILE}: not a PEM certificate with its matching "
                "unencrypted private key"
            ) from None
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def aiokafka_security_kwargs(settings: MonitorSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin).

    :raises KafkaSecurityError: if a TLS file cannot be used.
    """
    protocol = settings.kafka_security_protocol
    kwargs = SecurityKwargs(security_protocol=protocol)
    if protocol in SSL_PROTOCOLS:
        kwargs["ssl_context"] = ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password_value()
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = password.get_secret_value() if password else None
    return kwargs


def faust_credentials(settings: MonitorSettings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the same settings (``None`` for PLAINTEXT).

    Faust turns these into the same aiokafka arguments for its consumer, producer and the
    client that creates its internal topics (``credentials_to_aiokafka_auth``).
    """
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol in SASL_PROTOCOLS:
        password = settings.kafka_sasl_password_value()
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def check_connection(
    servers: Sequence[str], security: dict[str, Any], *, wait_s: float = 10.0
) -> None:
    """Connect to the first answering server as every client will (TLS, SASL), and ask it for
    metadata; a broker that wants authentication refuses that request to an anonymous client.

    A refused connection or an unknown host is retried for ``wait_s`` (a broker starting next to
    the worker); a TLS or SASL failure is final at once.

    :raises KafkaConnectError: when no server can be used, describing the first failure.
    """
    deadline = time.monotonic() + wait_s
    while True:
        failures: list[tuple[BaseException, str]] = []
        for server in servers:
            try:
                await _try_server(server, security, max(deadline - time.monotonic(), 1.0))
            except Exception as exc:
                line = f"cannot connect to Kafka at {server}: {describe_failure(exc, security)}"
                failures.append((exc, line))
            else:
                return
        if not failures:
            raise KafkaConnectError("no Kafka server configured")
        transient = all(isinstance(e, _TRANSIENT) for e, _ in failures)
        if not transient or time.monotonic() + _RETRY_S >= deadline:
            raise KafkaConnectError(failures[0][1])
        await asyncio.sleep(_RETRY_S)


async def _try_server(server: str, security: dict[str, Any], wait_s: float) -> None:
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit():
        host, port = server, _DEFAULT_PORT
    async with asyncio.timeout(wait_s):
        conn = await create_conn(host, int(port), request_timeout_ms=int(wait_s * 1000), **security)
        try:
            await conn.send(MetadataRequest([]))
        finally:
            closed = conn.close()
            if closed is not None:  # a TLS socket closes only after its close_notify
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closed), 2)


def describe_failure(exc: BaseException, security: dict[str, Any]) -> str:
    """One line saying what went wrong and which setting to check; never the password."""
    protocol = security.get("security_protocol", "PLAINTEXT")
    sasl = protocol in SASL_PROTOCOLS
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            return (
                "TLS handshake failed: the broker's certificate is not valid for that host name "
                f"(check the broker address, or {_CHECK_HOSTNAME})"
            )
        reason = exc.verify_message or "certificate verify failed"
        return f"TLS handshake failed: certificate verify failed: {reason} (check {_CAFILE})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {_ssl_reason(exc)}"
    if isinstance(exc, kafka_errors.UnsupportedSaslMechanismError):
        return f"the broker does not offer {security.get('sasl_mechanism')} (check {_MECHANISM})"
    if isinstance(exc, kafka_errors.SaslAuthenticationFailed):
        return f"SASL authentication failed ({_CREDENTIALS_HINT})"
    if sasl and isinstance(exc, (KeyError, ValueError, kafka_errors.IllegalSaslStateError)):
        # aiokafka's SCRAM client fails this way when the server's final message is an error.
        return f"SASL authentication failed ({_CREDENTIALS_HINT})"
    if isinstance(exc, TimeoutError):
        return f"no answer in time (is the broker up, and is {_PROTOCOL}={protocol} right?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker up, and is the address right?)"
    if isinstance(exc, socket.gaierror):
        return "unknown host name"
    if isinstance(exc, (kafka_errors.KafkaConnectionError, ConnectionError, EOFError)):
        if sasl:
            return (
                f"the broker closed the connection while authenticating ({_CREDENTIALS_HINT}, "
                f"and {_MECHANISM})"
            )
        if protocol == "PLAINTEXT":
            return f"the broker closed the connection (does it want TLS or SASL? check {_PROTOCOL})"
        # Under TLS 1.3 a refused client certificate only shows as a closed connection.
        return (
            "the broker closed the connection (does it want SASL, or a client certificate? "
            f"check {_PROTOCOL} and {_CERTFILE})"
        )
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, kafka_errors.KafkaError):
        return f"Kafka error {type(exc).__name__}"
    return f"unexpected {type(exc).__name__}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    reason = (exc.reason or type(exc).__name__).upper()
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason:
        return f"the listener does not speak TLS (check {_PROTOCOL})"
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or "CERTIFICATE_REQUIRED" in reason:
        return f"the broker refused our client certificate (check {_CERTFILE} and {_KEYFILE})"
    return reason.lower().replace("_", " ")
