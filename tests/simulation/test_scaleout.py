"""Scale-out: a trial run on Dask workers gives the serial run's rows (issue 6, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bonecast.cli import app

runner = CliRunner()

SPEC = {
    "name": "scale-out",
    "seed": 11,
    "population": {
        "n": 60,
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
        },
        {"name": "untreated"},
    ],
    "outputs": {
        "quantities": ["lumbar_spine", "total_hip", "ctx"],
        "months": [6, 12],
        "intervals": [[6, 12]],
    },
}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scaleout") / "trial.yaml"
    path.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    return path


def _run(spec_file: Path, out: Path, *options: str) -> list[str]:
    result = runner.invoke(app, ["trial", "run", str(spec_file), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def serial_rows(spec_file: Path) -> list[str]:
    return _run(spec_file, spec_file.with_name("serial.csv"))


def test_dask_workers_reproduce_the_serial_rows(spec_file: Path, serial_rows: list[str]) -> None:
    rows = _run(spec_file, spec_file.with_name("dask.csv"), "--workers", "2")
    assert len(serial_rows) == 1 + 2 * 3 * 3
    assert rows == serial_rows


def test_chunk_size_does_not_change_rows(spec_file: Path, serial_rows: list[str]) -> None:
    rows = _run(spec_file, spec_file.with_name("chunked.csv"), "--chunk-size", "7")
    assert rows == serial_rows


def test_workers_and_scheduler_are_exclusive(spec_file: Path) -> None:
    out = spec_file.with_name("both.csv")
    args = ["trial", "run", str(spec_file), "--out", str(out), "--workers", "2"]
    result = runner.invoke(app, [*args, "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert not out.exists()


def test_serial_progress_is_reported_while_a_chunk_runs() -> None:
    """A serial run of one chunk still moves the progress bar (not 0 % then 100 %)."""
    from bonecast.simulation import parse_trial_spec, run_trial

    spec = parse_trial_spec(SPEC)
    calls: list[int] = []
    run_trial(spec, progress=calls.append)
    n = spec.population.n if spec.population.variability else 1
    assert len(calls) > len(spec.arms)
    assert sum(calls) == len(spec.arms) * n * spec.horizon_days
