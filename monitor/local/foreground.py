"""``cbc-monitor broker``: the Tansu broker in the foreground, attached to this terminal, with
Ctrl-C and termination signals forwarded to it for a clean shutdown."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

from monitor.local.processes import exit_status, signal_group, spawn_group, terminate_group
from monitor.local.tansu import DEFAULT_HOST, broker_command

__all__ = ["run_foreground"]

_log = logging.getLogger("monitor.local.broker")  # where this warning was always logged


def run_foreground(port: int, *, host: str = DEFAULT_HOST, grace: float = 10.0) -> int:
    """Run the broker attached to this terminal until it exits; return its exit status.

    For ``cbc-monitor broker --port N``. The broker's output goes to this process's stdout and
    stderr. Ctrl-C (SIGINT) and SIGTERM/SIGHUP received by this process are forwarded to the
    broker once for a clean shutdown; a second one, or ``grace`` seconds without the broker
    exiting, kills it with SIGKILL. Death by signal N is reported as 128 + N.
    """
    argv = broker_command(port, host=host)
    proc = spawn_group(argv, stdout=None, env=dict(os.environ))
    forwarded: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if forwarded:
            signal_group(proc, signal.SIGKILL)
        else:
            signal_group(proc, signum)
        forwarded.append(signum)

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward) for signum in watched}
    try:
        while True:
            try:
                returncode = proc.wait(timeout=grace if forwarded else None)
                break
            except subprocess.TimeoutExpired:
                _log.warning("broker still running %.1fs after a signal; killing it", grace)
                signal_group(proc, signal.SIGKILL)
            except KeyboardInterrupt:  # only when handlers could not be installed
                forward(signal.SIGINT, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.returncode is None:
            terminate_group(proc, grace)
    return exit_status(returncode)
