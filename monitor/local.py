"""Worker processes on this machine, for the demo and the integration tests.

Each worker is a real ``cbc-monitor worker`` child process configured through ``MONITOR_*``
variables, exactly as in production; it can be stopped, killed with SIGKILL and restarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from monitor.broker import die_with_parent_hook, find_free_port


class WorkerProcess:
    def __init__(
        self,
        name: str,
        broker_url: str,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.broker_url = broker_url
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.log_path = (log_dir or data_dir.parent) / f"{name}.log"
        self.web_port = find_free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

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
            # Local workers run on the embedded broker (see MonitorSettings.one_record_per_batch).
            "MONITOR_ONE_RECORD_PER_BATCH": "true",
            **self.extra_env,
        }

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        # Its own process group (so stop/kill reach its children) and SIGKILL when this process
        # dies, however it dies: no worker outlives the demo or a failed test.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "worker"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
        )
        return self

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

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown, no final commit."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _decode(body: bytes, headers: Any) -> Any:
    if "json" in (headers.get("Content-Type") or ""):
        return json.loads(body or b"null")
    return body.decode()
