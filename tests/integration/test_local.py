"""Worker child processes for the demo and tests never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from monitor.local.broker import EmbeddedBroker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

_CHILD_STARTS_WORKER = """
import sys, tempfile
from pathlib import Path
from monitor.local.processes import WorkerProcess
worker = WorkerProcess("orphan", sys.argv[1], Path(tempfile.mkdtemp()) / "data")
worker.start()
worker.wait_ready()
print(worker.proc.pid, flush=True)
sys.stdin.readline()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] != "Z"


def test_a_worker_dies_with_its_parent_even_on_sigkill(broker: EmbeddedBroker) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _CHILD_STARTS_WORKER, broker.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    try:
        assert _alive(worker_pid)
        time.sleep(1)
        assert _alive(worker_pid), "the worker stopped by itself: nothing would be tested"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker_pid), "the worker outlived its parent"
    finally:
        if _alive(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)
        parent.stdout.close()
        if parent.stdin is not None:
            parent.stdin.close()
