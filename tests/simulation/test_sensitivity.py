"""Sobol sensitivity of a trial output to the calibrated parameters (issue 6, item 4)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation.sensitivity import SOBOL_COLUMNS, parse_output

runner = CliRunner()

SPEC = {
    "name": "sensitivity",
    "population": {
        "n": 10,
        "menopausal_status": "postmenopausal",
        "age_years": {"mean": 64, "sd": 8},
        "baseline_t_score": {"lumbar_spine": {"mean": -0.8, "sd": 1.0}},
    },
    "arms": [
        {
            "name": "anastrozole",
            "treatments": [
                {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
            ],
        }
    ],
    "outputs": {"quantities": ["lumbar_spine"], "months": [12]},
}


def test_sobol_indices_of_a_tiny_sample(tmp_path: Path) -> None:
    spec = tmp_path / "trial.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = tmp_path / "sobol"
    args = ["sensitivity", str(spec), "--arm", "anastrozole", "--output", "lumbar_spine@12"]
    result = runner.invoke(app, [*args, "--samples", "16", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with (out / "sobol_indices.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SOBOL_COLUMNS
    assert len(rows) > 5
    s1 = [float(row["S1"]) for row in rows]
    st = [float(row["ST"]) for row in rows]
    assert all(math.isfinite(v) for v in s1 + st)
    # N = 16 is noisy: total order should still exceed first order, give or take, mostly
    assert sum(t >= s - 0.3 for s, t in zip(s1, st, strict=True)) >= 0.8 * len(rows)
    assert (out / "sobol_indices.png").stat().st_size > 1000


@pytest.mark.parametrize("text", ["lumbar_spine", "hip_fracture@12", "ctx@0", "foo@12", "ctx@x"])
def test_bad_outputs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_output(text)
