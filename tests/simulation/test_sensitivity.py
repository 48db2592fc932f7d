"""Sobol sensitivity of a trial output to the calibrated parameters (issue 6, item 4)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import default_parameter_set, parse_trial_spec
from bonecast.simulation.executors import SerialExecutor
from bonecast.simulation.sensitivity import SOBOL_COLUMNS, parse_output, sobol_indices

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


def _sobol(folder: Path, *options: str) -> Path:
    spec = folder / "trial.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = folder / "sobol"
    args = ["sensitivity", str(spec), "--arm", "anastrozole", "--output", "lumbar_spine@12"]
    result = runner.invoke(app, [*args, "--samples", "16", "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def serial_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _sobol(tmp_path_factory.mktemp("serial"))


def test_sobol_indices_of_a_tiny_sample(serial_out: Path) -> None:
    with (serial_out / "sobol_indices.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == SOBOL_COLUMNS
    assert len(rows) > 5
    s1 = [float(row["S1"]) for row in rows]
    st = [float(row["ST"]) for row in rows]
    assert all(math.isfinite(v) for v in s1 + st)
    # N = 16 is noisy: total order should still exceed first order, give or take, mostly
    assert sum(t >= s - 0.3 for s, t in zip(s1, st, strict=True)) >= 0.8 * len(rows)
    assert (serial_out / "sobol_indices.png").stat().st_size > 1000


def test_sobol_on_two_dask_workers_equals_the_serial_run(serial_out: Path, tmp_path: Path) -> None:
    distributed = _sobol(tmp_path, "--workers", "2")
    indices = (distributed / "sobol_indices.csv").read_text(encoding="utf-8")
    assert indices == (serial_out / "sobol_indices.csv").read_text(encoding="utf-8")


def test_sobol_blocks_give_bit_identical_indices() -> None:
    """The outputs of the Saltelli samples do not depend on how they are cut into blocks."""
    spec = parse_trial_spec(SPEC)
    params = default_parameter_set()
    one = sobol_indices(spec, "anastrozole", "lumbar_spine", 12, params, samples=8)
    blocks = sobol_indices(
        spec, "anastrozole", "lumbar_spine", 12, params, samples=8, executor=ThreeBlocks()
    )
    for name in ("S1", "S1_conf", "ST", "ST_conf"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(one, name))


class ThreeBlocks(SerialExecutor):
    """Runs here, but sized as three workers, so the samples are cut into three blocks."""

    @property
    def parallelism(self) -> int:
        return 3


@pytest.mark.parametrize("text", ["lumbar_spine", "hip_fracture@12", "ctx@0", "foo@12", "ctx@x"])
def test_bad_outputs_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_output(text)
