"""`bonecast trial run` uses the compiled engine by default (issue 17 item 2)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from test_trial_run import SMALL_SPEC, write_spec
from typer.testing import CliRunner

import bonecast.simulation
from bonecast.cli import app
from bonecast.simulation.solver import resolve_engine

runner = CliRunner()


def test_default_engine_is_auto_and_auto_is_numba() -> None:
    """`auto` means the compiled kernel wherever Numba imports (it is a dependency)."""
    pytest.importorskip("numba")
    assert resolve_engine("auto") == "numba"


def test_trial_run_passes_auto_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engines: list[str] = []
    run_trial = bonecast.simulation.run_trial

    def spy(*args: Any, **kwargs: Any) -> Any:
        engines.append(kwargs["engine"])
        return run_trial(*args, **kwargs)

    monkeypatch.setattr(bonecast.simulation, "run_trial", spy)
    spec = write_spec(tmp_path, SMALL_SPEC)
    for extra in ([], ["--engine", "numpy"]):
        result = runner.invoke(
            app, ["trial", "run", str(spec), "--out", str(tmp_path / "r.csv"), *extra]
        )
        assert result.exit_code == 0, result.output
    assert engines == ["auto", "numpy"]


def test_default_and_reference_engines_write_the_same_rows(tmp_path: Path) -> None:
    """The compiled default and the NumPy reference agree on every row to 0.01 pp."""
    spec = write_spec(tmp_path, SMALL_SPEC)
    tables = []
    for name, extra in (("default", []), ("numpy", ["--engine", "numpy"])):
        out = tmp_path / f"{name}.csv"
        result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        with out.open(newline="") as handle:
            tables.append(list(csv.DictReader(handle)))
    default, reference = tables
    assert len(default) == len(reference) > 0
    for row, ref in zip(default, reference, strict=True):
        assert [row[k] for k in ("arm", "quantity", "month")] == [
            ref[k] for k in ("arm", "quantity", "month")
        ]
        assert abs(float(row["mean_pct_change"]) - float(ref["mean_pct_change"])) <= 0.01
