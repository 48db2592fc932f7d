"""`bonecast calibrate` and `bonecast validate` from the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from typer.testing import CliRunner

from bonecast.cli import app
from bonecast.simulation import load_parameter_set

runner = CliRunner()
TRIALS = Path(__file__).resolve().parents[2] / "examples" / "trials" / "calibration"
HOLDOUT_TRIALS = TRIALS.parent / "holdout"


def test_validate_writes_table_figures_and_html(tmp_path: Path) -> None:
    out = tmp_path / "validation"
    result = runner.invoke(
        app,
        ["validate", "--out", str(out), "--trials", str(TRIALS), "--n-per-arm", "30",
         "--holdout-trials", str(HOLDOUT_TRIALS)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "high-weight targets" in result.output
    with (out / "validation_targets.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 146  # every row of the shipped target file
    assert {"target_id", "target_pct", "model_pct", "difference_pp", "pass"} <= set(rows[0])
    assert all(r["reason_if_missed"] for r in rows if r["pass"] == "no")
    assert (
        len(list(out.glob("validation_*.png"))) == 49
    )  # 31 trials (FREEDOM extension, FLEX and issue 14's 14 new trials among them),
    # fractures, forest plot, 2 male trials, bias, after stopping, femoral neck, and the
    # trials never fitted to: their published-vs-model figure and one per hold-out trial (10,
    # ZO-FAST's 36-month spine among them)
    with (out / "validation_men.csv").open(newline="") as handle:
        men = list(csv.DictReader(handle))
    assert [m["target_id"] for m in men] == ["M1", "M2", "M3", "M4"]
    assert "men: " in result.output and "male targets within tolerance" in result.output
    assert all(r["in_predictive_interval"] in ("yes", "no", "") for r in rows)
    assert sum(r["in_predictive_interval"] == "yes" for r in rows) >= 80
    with (out / "validation_trial_effects.csv").open(newline="") as handle:
        effects = list(csv.DictReader(handle))
    assert {"sabre", "atac", "ibis2_stratum2"} <= {e["trial"] for e in effects}
    for e in effects:
        assert float(e["ci95_low_pp"]) < float(e["estimate_pp"]) < float(e["ci95_high_pp"])
    assert "targets inside their 95 % predictive interval; between-trial SD" in result.output
    with (out / "validation_fractures.csv").open(newline="") as handle:
        fractures = list(csv.DictReader(handle))
    assert [f["target_id"] for f in fractures] == [f"F{i}" for i in range(1, 18)]
    for f in fractures:
        assert f["source"] and f["inside_ci95"] in ("yes", "no")
        assert float(f["ci95_low"]) < float(f["literature"]) < float(f["ci95_high"])
        assert float(f["predictive95_low"]) < float(f["model"]) < float(f["predictive95_high"])
        assert f["inside_ci95_trial_left_out"] in ("yes", "no") and f["model_trial_left_out"]
    assert "published results inside their 95 % interval" in result.output
    assert "each trial left out of the fit" in result.output
    page = (out / "validation.html").read_text(encoding="utf-8")
    assert "validation_atac.png" in page and "not a medical device" in page
    assert "<h2>Fracture outcomes</h2>" in page and "validation_fractures.png" in page
    assert "leave one trial out" in page and "<h3>Trial effects</h3>" in page
    assert "<h2>Men</h2>" in page and "validation_men_burnett_bowie_men.png" in page
    assert "<h2>Between-trial heterogeneity</h2>" in page
    assert "validation_trial_effects.png" in page
    # issue 14: bias per site and per drug class, after stopping per drug class, femoral neck
    with (out / "validation_bias.csv").open(newline="") as handle:
        bias = {(b["grouping"], b["group"]): b for b in csv.DictReader(handle)}
    bmd_rows = [r for r in rows if r["quantity"] in ("lumbar_spine", "total_hip", "femoral_neck")]
    assert sum(int(b["targets"]) for (g, _), b in bias.items() if g == "site") == len(bmd_rows)
    assert {("site", "femoral neck"), ("drug class", "RANKL antibody")} <= set(bias)
    assert "<h2>After stopping, per drug class</h2>" in page
    assert "validation_after_stopping.png" in page and "validation_femoral_neck.png" in page
    # trials the model was never fitted to: their own table, figure and report section
    with (out / "validation_holdout.csv").open(newline="") as handle:
        held_out = list(csv.DictReader(handle))
    assert len(held_out) == 36 and not {h["target_id"] for h in held_out} & {
        r["target_id"] for r in rows
    }
    assert all(h["fitted"] == "no (external check)" for h in held_out)
    for h in held_out:  # judged by max(CI half-width, 1.0 pp) whatever the weight
        within = abs(float(h["difference_pp"])) <= float(h["tolerance_pp"])
        assert h["pass"] == ("yes" if within else "no")
        assert float(h["tolerance_pp"]) >= 1.0
    assert "trials never fitted to: " in result.output and "mean absolute error" in result.output
    assert "<h2>Trials the model was never fitted to</h2>" in page
    assert "validation_holdout.png" in page and "validation_holdout_data_denosumab.png" in page
    # the calibration's provenance is a readable list and a table of its stages
    assert "targets sha256:" in page and "<td>A natural progression</td>" in page
    assert "{'" not in page  # no raw Python dict


def test_calibrate_quick_writes_a_loadable_parameter_set(tmp_path: Path) -> None:
    out = tmp_path / "set.yaml"
    result = runner.invoke(
        app, ["calibrate", "--quick", "--out", str(out), "--trials", str(TRIALS)]
    )
    assert result.exit_code == 0, result.output
    params = load_parameter_set(out)
    assert params.provenance["mode"] == "quick"
    posterior = out.with_name("set_posterior.csv")
    assert posterior.exists()
    assert yaml.safe_load(out.read_text())["provenance"]["posterior_file"] == posterior.name


def test_missing_trials_folder_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--trials", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "--trials" in result.output
