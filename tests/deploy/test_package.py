"""The wheel the Dockerfile installs (``pip install .``) carries what a worker needs at run time.

An editable install reads files from the source tree, so a missing package-data entry would pass
every other test and break only the image: the dashboard's page would be gone.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from monitor.dashboard.routes import STATIC_TYPES
from tests.deploy import ROOT


def build_wheel(out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("cbc_monitor-*.whl")
    return wheel


def test_the_wheel_ships_the_dashboard_files_and_the_command(tmp_path: Path) -> None:
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = wheel.read(entry_points).decode()
    for name in STATIC_TYPES:
        assert f"monitor/dashboard/static/{name}" in names, f"{name} is not in the wheel"
    assert "cbc-monitor = monitor.cli:main" in scripts
    assert not any(n.startswith("tests/") for n in names), "tests must not be installed"
