"""Starting bonecast imports only what the command uses (issue 17 item 3).

Each check runs a fresh interpreter with ``-X importtime`` and reads the modules it imported; no
timing is asserted (start-up time lives in benchmarks/bench_startup.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

HEAVY = ("dask", "distributed", "matplotlib", "SALib", "libsbml", "sqlalchemy", "fastapi")
"""Top-level packages that no command's start-up needs, only the commands that use them."""


def imported_modules(*args: str) -> set[str]:
    """Every module a fresh ``python -X importtime ARGS`` imports (read from its stderr)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def heavy_in(modules: set[str]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in HEAVY}


def test_the_reader_sees_imports() -> None:
    """The check itself works: a command that needs SQLAlchemy is seen importing it."""
    modules = imported_modules("-c", "import bonecast.cli; import sqlalchemy")
    assert "bonecast.cli" in modules
    assert "sqlalchemy" in heavy_in(modules)


def test_import_bonecast_imports_no_heavy_package() -> None:
    modules = imported_modules("-c", "import bonecast")
    assert heavy_in(modules) == set()
    assert "numpy" not in modules


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["trial", "run", "--help"],
        ["assess", "--help"],
        ["serve", "--help"],
        ["users", "create", "--help"],
        ["export", "--help"],
        ["sensitivity", "--help"],
    ],
    ids=" ".join,
)
def test_help_imports_no_heavy_package(command: list[str]) -> None:
    modules = imported_modules("-m", "bonecast.cli", *command)
    assert heavy_in(modules) == set()
    assert "bonecast.simulation" not in modules
    assert "bonecast.clinical" not in modules


def test_trial_check_imports_the_simulator_only(tmp_path: Path) -> None:
    """Checking a spec loads the simulator, not Dask, plotting, SBML or the registry."""
    spec = Path(__file__).resolve().parents[2] / "examples" / "trials"
    example = sorted(spec.glob("*.yaml"))[0]
    modules = imported_modules("-m", "bonecast.cli", "trial", "check", str(example))
    assert "bonecast.simulation" in modules
    assert heavy_in(modules) == set()
