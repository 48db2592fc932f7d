"""The hold-out check (issue 14): published results the model is never fitted to."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import default_parameter_set
from bonecast.simulation.calibration import fit
from bonecast.simulation.calibration.holdout import (
    HOLDOUT_MAP_FILE,
    HOLDOUT_TARGET_FILE,
    load_holdout_targets,
    validate_holdout,
)
from bonecast.simulation.calibration.targets import TargetSet, load_targets

ROOT = Path(__file__).resolve().parents[2]
HOLDOUT_TRIALS = ROOT / "examples" / "trials" / "holdout"
CALIBRATION_TRIALS = ROOT / "examples" / "trials" / "calibration"


def _raw_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("bonecast.simulation").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_holdout_file_has_the_target_columns_and_sourced_rows() -> None:
    holdout = _raw_rows(HOLDOUT_TARGET_FILE)
    calibration = _raw_rows("calibration_targets.csv")
    assert list(holdout[0]) == list(calibration[0])
    assert 20 <= len(holdout) <= 40
    assert len({r["trial"] for r in holdout}) >= 6
    for row in holdout:
        assert row["citation"] and row["note"] and row["value_pct"], row["target_id"]
        assert row["verified"] in ("yes", "partial"), row["target_id"]
    targets = load_holdout_targets()
    assert len(targets.targets) == len(holdout)
    partial = {r["target_id"] for r in holdout if r["verified"] == "partial"}
    # a partly checked row counts as not verified (its weight class drops one step)
    assert {t.target_id for t in targets.targets if not t.row.verified} == partial


def test_no_holdout_row_duplicates_a_calibration_target() -> None:
    def key(row: dict[str, str]) -> tuple[str, str, str, float, float]:
        return (
            row["trial"].lower(),
            row["arm"].lower(),
            row["site_or_marker"],
            float(row["month_from"]),
            float(row["month_to"]),
        )

    calibration = _raw_rows("calibration_targets.csv") + _raw_rows("male_calibration_targets.csv")
    holdout = _raw_rows(HOLDOUT_TARGET_FILE)
    assert not {key(r) for r in holdout} & {key(r) for r in calibration}
    assert not {r["target_id"] for r in holdout} & {r["target_id"] for r in calibration}
    # nor what is simulated: the same spec, arms, quantity and interval
    fitted = {
        (
            t.link.trial,
            tuple(t.link.arms),
            t.link.minus,
            t.link.quantity,
            t.row.month_from,
            t.row.month_to,
        )
        for t in load_targets().targets
    }
    for t in load_holdout_targets().targets:
        simulated = (t.link.trial, tuple(t.link.arms), t.link.minus, t.link.quantity,
                     t.row.month_from, t.row.month_to)  # fmt: skip
        assert simulated not in fitted, t.target_id
    # the hold-out specs are not calibration specs
    calibration_specs = {p.stem for p in CALIBRATION_TRIALS.glob("*.yaml")}
    assert not {p.stem for p in HOLDOUT_TRIALS.glob("*.yaml")} & calibration_specs


def test_calibrate_never_reads_the_holdout_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`bonecast calibrate` fits the calibration targets only, and nothing it runs opens the
    hold-out file or its links (the fit itself is stopped once it has its targets)."""
    opened: list[str] = []
    real_read_text, real_open = Path.read_text, Path.open

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        opened.append(self.name)
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    def open_(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self.name)
        return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

    seen: list[TargetSet] = []

    class StoppedError(Exception):
        pass

    def calibrate(start: object, targets: TargetSet, *args: object, **kwargs: object) -> None:
        seen.append(targets)
        raise StoppedError

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(Path, "open", open_)
    monkeypatch.setattr(fit, "calibrate", calibrate)
    result = CliRunner().invoke(
        app, ["calibrate", "--quick", "--out", str(tmp_path / "set.yaml"), "--trials",
              str(CALIBRATION_TRIALS)],
    )  # fmt: skip
    assert isinstance(result.exception, StoppedError), result.output
    assert "calibration_targets.csv" in opened
    assert HOLDOUT_TARGET_FILE not in opened and HOLDOUT_MAP_FILE not in opened
    held_out = {t.target_id for t in load_holdout_targets().targets}
    assert held_out and not held_out & {t.target_id for t in seen[0].targets}
    # and the fit's module does not load the hold-out code at all
    probe = (
        "import sys, bonecast.simulation.calibration.fit as f; "
        "print('bonecast.simulation.calibration.holdout' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_holdout_scoring_runs_on_a_couple_of_rows() -> None:
    every = load_holdout_targets()
    chosen = [t for t in every.targets if t.target_id in ("DATA_DMAB_LS_M12", "TEAM_EXE_LS_M12")]
    report = validate_holdout(
        default_parameter_set(),
        HOLDOUT_TRIALS,
        targets=TargetSet(tuple(chosen), every.sha256),
        n_per_arm=40,
    )
    by_id = {c.target.target_id: c for c in report.checks}
    assert set(by_id) == {"DATA_DMAB_LS_M12", "TEAM_EXE_LS_M12"}
    # published directions: denosumab gains spine BMD, exemestane loses it
    assert by_id["DATA_DMAB_LS_M12"].model_pct > 0 > by_id["TEAM_EXE_LS_M12"].model_pct
    # the high-weight rule for every row: max(CI half-width, 1.0 pp), DATA's CI 4.4 to 6.6
    assert by_id["DATA_DMAB_LS_M12"].target.tolerance_pp(True) == pytest.approx(1.1)
    for check in report.checks:
        assert check.strict and not check.fitted
        assert check.passes(True) == (abs(check.difference_pp or 0.0) <= max(
            check.target.ci_half_width_pp or 0.0, 1.0))  # fmt: skip
        low, high = check.predictive_interval or (math.nan, math.nan)
        assert low < check.model_pct < high
        assert high - low > 2 * 1.96 * check.target.sigma_pp - 1e-9  # tau widens it
    head = report.headline()
    assert head["total"] == 2 and head["within"] == sum(c.passes(True) for c in report.checks)
    assert head["mae_pp"] == pytest.approx(
        sum(abs(c.difference_pp or 0.0) for c in report.checks) / 2
    )
    assert set(report.results) == {"data_denosumab", "team_bone"}


def test_a_fitted_trials_held_out_time_point_runs_on_its_calibration_spec() -> None:
    every = load_holdout_targets()
    chosen = TargetSet(
        tuple(t for t in every.targets if t.target_id == "ZOH_UP_LS_M36"), every.sha256
    )
    with pytest.raises(ValueError, match="zofast"):
        validate_holdout(default_parameter_set(), HOLDOUT_TRIALS, targets=chosen, n_per_arm=5)
    report = validate_holdout(
        default_parameter_set(),
        HOLDOUT_TRIALS,
        fitted_trials_folder=CALIBRATION_TRIALS,
        targets=chosen,
        n_per_arm=40,
    )
    (check,) = report.checks
    assert report.results["zofast"].spec.name == "ZO-FAST"  # the calibration spec, not a copy
    assert check.model_pct > 0  # upfront zoledronic acid gains spine BMD on letrozole
