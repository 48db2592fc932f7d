"""`bonecast trial run SPEC --out RESULTS.csv [--plot FIG.png]` per the architecture.md contract."""

from __future__ import annotations

import copy
import csv
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import RESULT_COLUMNS
from bonecast.simulation.parameters import default_parameter_set

runner = CliRunner()

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "trials"

ANASTROZOLE = {
    "drug": "anastrozole",
    "dose_mg": 1,
    "interval_days": 1,
    "start_month": 0,
    "stop_month": 12,
}

SMALL_SPEC: dict[str, Any] = {
    "name": "small",
    "seed": 3,
    "population": {
        "n": 40,
        "menopausal_status": "postmenopausal",
        "age_years": {"mean": 64, "sd": 8},
        "baseline_t_score": {"lumbar_spine": {"mean": -1.5, "sd": 0.8, "min": -3.0, "max": 0.0}},
        "variability": True,
    },
    "arms": [
        {
            "name": "anastrozole",
            "treatments": [
                dict(ANASTROZOLE),
            ],
        },
        {
            "name": "anastrozole + zoledronic acid",
            "treatments": [
                dict(ANASTROZOLE),
                {
                    "drug": "zoledronic_acid",
                    "dose_mg": 4,
                    "route": "iv",
                    "interval_days": 182,
                    "stop_month": 12,
                    "start_when": {"t_score_below": -2.0, "check_every_months": 6},
                },
            ],
        },
    ],
    "outputs": {
        "quantities": ["lumbar_spine", "total_hip", "ctx"],
        "months": [6, 12],
        "intervals": [[12, 18]],
    },
}


def write_spec(tmp_path: Path, spec: dict[str, Any], suffix: str = ".yaml") -> Path:
    path = tmp_path / f"spec{suffix}"
    text = json.dumps(spec) if suffix == ".json" else yaml.safe_dump(spec)
    path.write_text(text, encoding="utf-8")
    return path


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_good_spec_writes_contract_csv_and_plot(tmp_path: Path, suffix: str) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC, suffix)
    out, fig = tmp_path / "results.csv", tmp_path / "fig.png"
    result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out), "--plot", str(fig)])
    assert result.exit_code == 0, result.output
    header, rows = read_rows(out)
    assert header == list(RESULT_COLUMNS)
    # one row per arm x quantity x interval (2 months from baseline + 1 interval)
    assert len(rows) == 2 * 3 * 3
    keys = {(r["arm"], r["quantity"], r["month_from"], r["month"]) for r in rows}
    assert ("anastrozole", "lumbar_spine", "12", "18") in keys
    assert ("anastrozole + zoledronic acid", "ctx", "0", "6") in keys
    for row in rows:
        assert int(row["n"]) == 40
        assert float(row["p05"]) <= float(row["median_pct_change"]) <= float(row["p95"])
    spine_12 = {
        r["arm"]: float(r["mean_pct_change"])
        for r in rows
        if r["quantity"] == "lumbar_spine" and r["month"] == "12" and r["month_from"] == "0"
    }
    assert spine_12["anastrozole"] < 0  # loss on an aromatase inhibitor
    assert spine_12["anastrozole + zoledronic acid"] > spine_12["anastrozole"]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_spec_gives_identical_csv(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC)
    outs = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for out in outs:
        assert runner.invoke(app, ["trial", "run", str(spec), "--out", str(out)]).exit_code == 0
    assert outs[0].read_text() == outs[1].read_text()


def test_shipped_example_specs_are_valid() -> None:
    specs = sorted(EXAMPLES.glob("*.yaml"))
    assert specs, "examples/trials must ship example specs"
    for spec in specs:
        result = runner.invoke(app, ["trial", "check", str(spec)])
        assert result.exit_code == 0, (spec, result.output)


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SMALL_SPEC)
    target: Any = spec
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


DELETE = object()
TREATMENT = ["arms", 0, "treatments", 0]

BAD_INPUTS = {
    "unknown top-level key": (["colour"], "blue", ["colour", "unknown key"]),
    "unknown treatment key": ([*TREATMENT, "frequency"], "daily", ["frequency", "unknown key"]),
    "unknown drug": ([*TREATMENT, "drug"], "aspirin", ["drug", "unknown drug", "anastrozole"]),
    "negative dose": ([*TREATMENT, "dose_mg"], -1, ["dose_mg", "greater than 0"]),
    "stop before start": ([*TREATMENT, "start_month"], 13, ["stop_month", "not after the start"]),
    "missing population": (["population"], DELETE, ["population", "required"]),
    "missing dose": ([*TREATMENT, "dose_mg"], DELETE, ["dose_mg", "required"]),
    "unknown quantity": (["outputs", "quantities"], ["bone_age"], ["quantities", "lumbar_spine"]),
    "bad route": ([*TREATMENT, "route"], "iv", ["route", "oral"]),
    "negative n": (["population", "n"], -5, ["population.n", "greater than or equal to 1"]),
    "age out of range": (["population", "age_years"], 150, ["age_years", "18..110"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_names_field_and_writes_nothing(tmp_path: Path, case: str) -> None:
    path, value, expected = BAD_INPUTS[case]
    spec = write_spec(tmp_path, _mutate(path, value))
    out, fig = tmp_path / "results.csv", tmp_path / "fig.png"
    result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out), "--plot", str(fig)])
    assert result.exit_code == 2, result.output
    for fragment in expected:
        assert fragment in result.output, (fragment, result.output)
    assert not out.exists() and not fig.exists()
    assert list(tmp_path.iterdir()) == [spec]


def test_aromatase_inhibitor_premenopausal_without_ovarian_suppression_is_refused(
    tmp_path: Path,
) -> None:
    spec = _mutate(["population", "menopausal_status"], "premenopausal")
    out = tmp_path / "results.csv"
    result = runner.invoke(
        app, ["trial", "run", str(write_spec(tmp_path, spec)), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "goserelin" in result.output
    assert not out.exists()


def test_missing_output_folder_exits_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC)
    out = tmp_path / "no" / "such" / "results.csv"
    result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out)])
    assert result.exit_code == 2
    assert "--out" in result.output


def test_unreadable_spec_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["trial", "run", str(tmp_path / "absent.yaml"), "--out", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2
    assert "cannot read" in result.output


def test_drugs_and_parameters_listings() -> None:
    drugs = runner.invoke(app, ["drugs"])
    assert drugs.exit_code == 0
    for name in ("anastrozole", "zoledronic_acid", "denosumab", "goserelin"):
        assert name in drugs.output
    params = runner.invoke(app, ["parameters"])
    assert params.exit_code == 0
    assert "alpha_L" in params.output and "section" in params.output


def test_parameters_csv_gives_prior_ranges_and_posterior_intervals() -> None:
    result = runner.invoke(app, ["parameters", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(result.output))}
    assert rows.keys() == set(default_parameter_set().parameters)
    calibrated = [row for row in rows.values() if row["calibrated"] == "yes"]
    assert len(calibrated) >= 20
    for row in calibrated:
        low, high = float(row["posterior_p2_5"]), float(row["posterior_p97_5"])
        # the Laplace sample is centred on the MAP: the shipped value lies inside its interval
        assert low < float(row["value"]) < high, row["name"]
    beta = rows["age_deficit_per_year"]
    assert (beta["prior_low"], beta["prior_high"], beta["unit"]) == ("0.015", "0.12", "1/year")
    fixed = rows["m_p"]
    assert fixed["calibrated"] == "no" and fixed["posterior_p2_5"] == fixed["prior_low"] == ""


def test_compiled_engine_gives_the_same_csv(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC)
    numpy_out, numba_out = tmp_path / "numpy.csv", tmp_path / "numba.csv"
    assert runner.invoke(app, ["trial", "run", str(spec), "--out", str(numpy_out)]).exit_code == 0
    result = runner.invoke(
        app, ["trial", "run", str(spec), "--out", str(numba_out), "--engine", "numba"]
    )
    assert result.exit_code == 0, result.output
    _, fast = read_rows(numba_out)
    _, reference = read_rows(numpy_out)
    for a, b in zip(fast, reference, strict=True):
        assert float(a["mean_pct_change"]) == pytest.approx(float(b["mean_pct_change"]), abs=1e-3)


def test_unknown_engine_exits_2(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC)
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out), "--engine", "gpu"])
    assert result.exit_code == 2 and "--engine" in result.output
    assert not out.exists()


def test_predictive_interval_adds_between_trial_sd_and_sampling_error(tmp_path: Path) -> None:
    """--predictive keeps the result columns and widens param_cri05/95 around the same draws
    by the site's between-trial SD and sd / sqrt(n): wider than parameter uncertainty alone,
    and at least the normal 90 % interval of that SD."""
    from bonecast.simulation.calibration.heterogeneity import Heterogeneity, predictive_sd

    spec = write_spec(tmp_path, SMALL_SPEC)
    plain, predictive = tmp_path / "plain.csv", tmp_path / "predictive.csv"
    args = ["trial", "run", str(spec), "--uncertainty", "40"]
    assert runner.invoke(app, [*args, "--out", str(plain)]).exit_code == 0
    result = runner.invoke(app, [*args, "--predictive", "--out", str(predictive)])
    assert result.exit_code == 0, result.output
    header, rows = read_rows(predictive)
    assert header == [*RESULT_COLUMNS, "param_cri05", "param_cri95"]
    plain_rows = {
        (r["arm"], r["quantity"], r["month_from"], r["month"]): r for r in read_rows(plain)[1]
    }
    het = Heterogeneity.of(default_parameter_set())
    for row in rows:
        before = plain_rows[(row["arm"], row["quantity"], row["month_from"], row["month"])]
        assert row["mean_pct_change"] == before["mean_pct_change"]  # fixed effects unchanged
        width = float(row["param_cri95"]) - float(row["param_cri05"])
        assert width > float(before["param_cri95"]) - float(before["param_cri05"])
        scale = predictive_sd(het.tau(row["quantity"]), float(row["sd"]), 40)
        assert width >= 2 * 1.6448 * scale - 1e-3


def test_predictive_needs_draws_and_a_set_with_a_between_trial_sd(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SMALL_SPEC)
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["trial", "run", str(spec), "--out", str(out), "--predictive"])
    assert result.exit_code == 2 and "--uncertainty" in result.output
    # a parameter set calibrated before the random effects still runs, and says why not here
    params = default_parameter_set()
    data = params.model_dump(mode="json")
    del data["provenance"]["heterogeneity"]
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data), encoding="utf-8")
    posterior = str(params.provenance["posterior_file"])
    shipped = resources.files("bonecast.simulation").joinpath("data").joinpath(posterior)
    (tmp_path / posterior).write_text(shipped.read_text(encoding="utf-8"), encoding="utf-8")
    ok = runner.invoke(
        app, ["trial", "run", str(spec), "--out", str(out), "--parameters", str(old)]
    )
    assert ok.exit_code == 0, ok.output
    refused = runner.invoke(
        app,
        [
            *("trial", "run", str(spec), "--out", str(out)),
            *("--parameters", str(old)),
            "--predictive",
            "--uncertainty",
            "10",
        ],
    )
    assert refused.exit_code == 2
    assert "calibrated without trial random effects" in refused.output
