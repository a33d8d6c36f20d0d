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


def _python(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_layer_and_the_entry_points_work_from_the_unpacked_wheel(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        wheel.extractall(site)
    for package in sorted((ROOT / "monitor").glob("*/__init__.py")):
        wanted = package.relative_to(ROOT).as_posix()
        assert wanted in names, f"{wanted} is not in the wheel"
    # The unpacked wheel comes first on the path, ahead of the editable install of the tree.
    script = (
        "import sys, monitor, monitor.dashboard.routes as r\n"
        f"assert monitor.__file__.startswith({str(site)!r}), monitor.__file__\n"
        "assert set(r.load_static()) == set(r.STATIC_TYPES)\n"
        "from monitor.cli import main\n"
        "sys.argv = ['cbc-monitor', '--help']\n"
        "main()\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    cli = _python(["-c", script], tmp_path, env)
    assert cli.returncode == 0, cli.stderr
    assert "worker" in cli.stdout
    assert "replay" in cli.stdout
    bench = _python(["-m", "monitor.bench", "--help"], tmp_path, env)
    assert bench.returncode == 0, bench.stderr
    assert "measured figures" in bench.stdout
