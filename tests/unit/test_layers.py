"""The layers of DESIGN.md hold in the tree: import-linter's contracts (pyproject.toml,
``[tool.importlinter]``) are kept by the package as it is, and broken by a forbidden import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_layer_contract_is_kept() -> None:
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "4 kept, 0 broken" in run.stdout


def test_a_forbidden_import_or_a_cycle_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "monitor", tmp_path / "monitor")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    grading = tmp_path / "monitor" / "clinical" / "grading.py"
    grading.write_text(grading.read_text() + "\nimport monitor.sim.cohort  # noqa\n")
    routes = tmp_path / "monitor" / "dashboard" / "routes.py"
    routes.write_text(routes.read_text() + "\nimport monitor.stream.app  # noqa\n")
    run = _lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout[-3000:]
    out = " ".join(run.stdout.split())
    assert "monitor.clinical is not allowed to import monitor.sim" in out
    assert "No import cycles between sibling modules or packages BROKEN" in out
    assert "Adapters import only the clinical core KEPT" in out
