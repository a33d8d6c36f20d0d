"""Child processes on this machine, for the demo and the integration tests.

:class:`ChildProcess` runs any program in its own process group, logging to a file, tied to this
process's lifetime. :class:`WorkerProcess` is a real ``cbc-monitor worker`` configured through
``MONITOR_*`` variables, exactly as in production; it can be stopped, killed with SIGKILL and
restarted. The process-group helpers (:func:`spawn_group`, :func:`terminate_group`) are what
the embedded broker runs on as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Self

_log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The port is only free at the moment of the call; :class:`EmbeddedBroker` retries with a new
    port if another process takes it first.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent_hook() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that makes the child receive SIGKILL when its parent dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); ``None`` elsewhere. libc is resolved here, in
    the parent, so the hook does as little as possible between ``fork`` and ``exec``. If the
    parent already died before the hook ran, the child kills itself.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent_pid = os.getpid()

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def spawn_group(
    argv: list[str], *, stdout: IO[bytes] | None, env: dict[str, str] | None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session and process group, tied to this process's lifetime.

    ``stdout=None`` inherits this process's stdout and stderr; otherwise both go to ``stdout``.
    ``env=None`` inherits this process's environment.
    """
    # No shell: argv is a list. preexec_fn is the only way to reach prctl.
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent_hook(),
        close_fds=True,
    )


def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to the process group led by ``proc`` (no-op once it has been reaped)."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def terminate_group(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap, return the code."""
    signal_group(proc, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _log.warning("pid %d ignored SIGTERM for %.1fs; sending SIGKILL", proc.pid, grace)
        signal_group(proc, signal.SIGKILL)
        return proc.wait()


def exit_status(returncode: int) -> int:
    """Map a Popen return code to a shell-style exit status (128 + N for death by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


class ChildProcess:
    """``argv`` in its own process group (so stop and kill reach its children), its output
    appended to ``log_path``, and SIGKILLed when this process dies, however it dies."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._env = env  # None: this process's environment
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def environment(self) -> dict[str, str] | None:
        return self._env

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = spawn_group(self.argv, stdout=self._log, env=self.environment())
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            terminate_group(self.proc, timeout)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            signal_group(self.proc, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class WorkerProcess(ChildProcess):
    def __init__(
        self,
        name: str,
        broker_url: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        log_path = (log_dir or data_dir.parent) / f"{name}.log"
        super().__init__([sys.executable, "-m", "monitor.cli", "worker"], log_path)
        self.name = name
        self.broker_url = broker_url
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.web_port = find_free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        # The worker talks to this broker only: Kafka security settings of the calling shell
        # (meant for another cluster) are not inherited; a test passes its own in ``env``.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_KAFKA_")}
        return {
            **inherited,
            "MONITOR_BROKER_URL": self.broker_url,
            "MONITOR_WEB_HOST": "127.0.0.1",
            "MONITOR_WEB_PORT": str(self.web_port),
            "MONITOR_DATA_DIR": str(self.data_dir),
            # Local workers run on the embedded broker (see MonitorSettings.end_offsets_per_batch).
            "MONITOR_END_OFFSETS_PER_BATCH": "true",
            **self.extra_env,
        }

    def environment(self) -> dict[str, str]:
        return self.env()

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return super().start()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, _decode(response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read(), exc.headers)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds until /readyz answers 200; raises if the worker dies or times out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(OSError):
                if self.get("/readyz")[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.25)
        raise TimeoutError(
            f"worker {self.name} not ready after {timeout:.0f}s; see {self.log_path}"
        )


def _decode(body: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(body or b"null")
    return body.decode()
