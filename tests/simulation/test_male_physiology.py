"""Men in the simulator: the spec, hormones against published data, testosterone replacement,
bone's response against the male targets, and the observables a spec can ask for."""

from __future__ import annotations

import numpy as np
import pytest

from bonecast.simulation import (
    PopulationSpec,
    Treatment,
    default_parameter_set,
    parse_trial_spec,
    run_trial,
    sample_population,
    simulate,
)
from bonecast.simulation.calibration.male import (
    FITTED,
    fit_male_parameters,
    load_male_targets,
)
from bonecast.simulation.male import default_male_parameters
from bonecast.simulation.regimens import month_to_day
from bonecast.simulation.trials import TrialSpecError

CALIBRATION_TRIALS = "examples/trials/calibration"
ANASTROZOLE = dict(drug="anastrozole", dose_mg=1.0, interval_days=1.0)
GEL = dict(drug="testosterone_gel", dose_mg=50.0, interval_days=1.0)
YEAR = month_to_day(12)


def _man(age: float = 68.0) -> object:
    spec = PopulationSpec(n=1, sex="male", age_years=age, variability=False)
    return sample_population(spec, default_parameter_set(), 0)


def _run(plan: list[dict[str, float]], days: list[int] | None = None) -> object:
    treatments = [Treatment(**d, start_month=0) for d in plan]
    return simulate(_man(), treatments, YEAR, record_days=days or [0, 90, YEAR])


def _spec(population: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "name": "men",
        "population": {"n": 50, "age_years": 68, **population},
        "arms": [{"name": "anastrozole", "treatments": [{**ANASTROZOLE, "start_month": 0}]}],
        "outputs": {"quantities": ["lumbar_spine"], "months": [12]},
        **extra,
    }


def test_menopausal_status_with_sex_male_is_an_error_naming_the_field() -> None:
    with pytest.raises(TrialSpecError, match="menopausal_status"):
        parse_trial_spec(_spec({"sex": "male", "menopausal_status": "postmenopausal"}))
    with pytest.raises(TrialSpecError, match="menopausal_status"):
        parse_trial_spec(_spec({}))  # a woman needs it (sex defaults to female)


def test_testosterone_is_refused_for_women() -> None:
    women = _spec({"menopausal_status": "postmenopausal"})
    women["arms"][0]["treatments"].append({**GEL, "start_month": 0})  # type: ignore[index]
    with pytest.raises(TrialSpecError, match="testosterone_gel is modelled in men only"):
        parse_trial_spec(women)
    asks = _spec({"menopausal_status": "postmenopausal"})
    asks["outputs"]["quantities"] = ["testosterone"]  # type: ignore[index]
    with pytest.raises(TrialSpecError, match="testosterone is modelled in men only"):
        parse_trial_spec(asks)


def test_anastrozole_lowers_a_mans_estradiol_partly_while_testosterone_rises() -> None:
    """Burnett-Bowie 2009 (J Clin Endocrinol Metab 94:4785), month 3: estradiol 15 -> 12 pg/mL
    (-20 %), testosterone 319 -> 524 ng/dL (+64 %); tolerance 5 pp and 10 pp."""
    sim = _run([ANASTROZOLE])
    e2 = 100 * (sim.estradiol_pg_ml[1, 0] / sim.estradiol_pg_ml[0, 0] - 1)
    t = 100 * (sim.testosterone_ng_dl[1, 0] / sim.testosterone_ng_dl[0, 0] - 1)
    assert e2 == pytest.approx(-20.0, abs=5.0)
    assert t == pytest.approx(64.0, abs=10.0)


def test_testosterone_gel_matches_finkelstein_dose_response() -> None:
    """Finkelstein 2013 (N Engl J Med 369:1011), GnRH agonist + 1.25 or 2.5 g of 1 % gel:
    testosterone 191 and 337 ng/dL against 44 on placebo gel (the rise, within 15 %); estradiol
    follows testosterone without anastrozole and stays low with it."""
    goserelin = dict(drug="goserelin", dose_mg=3.6, interval_days=28.0)
    for gel_g, published in ((1.25, 191.0 - 44.0), (2.5, 337.0 - 44.0)):
        gel = dict(GEL, dose_mg=10.0 * gel_g)
        alone = _run([goserelin, gel])
        assert alone.testosterone_ng_dl[1, 0] == pytest.approx(published, rel=0.15)
        with_ai = _run([goserelin, gel, ANASTROZOLE])
        assert with_ai.estradiol_pg_ml[1, 0] < 0.6 * alone.estradiol_pg_ml[1, 0]


def test_testosterone_replacement_raises_testosterone_and_estradiol() -> None:
    for drug in ("testosterone_gel", "testosterone_cypionate", "testosterone_enanthate"):
        dose = (50.0, 1.0) if drug == "testosterone_gel" else (200.0, 14.0)
        sim = _run([dict(drug=drug, dose_mg=dose[0], interval_days=dose[1])])
        assert sim.testosterone_ng_dl[1, 0] > 1.3 * sim.testosterone_ng_dl[0, 0], drug
        assert sim.estradiol_pg_ml[1, 0] > 1.2 * sim.estradiol_pg_ml[0, 0], drug


def test_bone_follows_estradiol_in_men() -> None:
    """Anastrozole alone loses spine BMD; testosterone gains; anastrozole added to testosterone
    takes the gain away, though less is lost than on anastrozole alone (estradiol, made from
    the extra testosterone, drives bone in the model)."""
    spine = {
        name: 100 * (_run(plan).bmd_ratio[-1, 0, 0] - 1)
        for name, plan in {
            "none": [],
            "anastrozole": [ANASTROZOLE],
            "gel": [GEL],
            "gel + anastrozole": [GEL, ANASTROZOLE],
        }.items()
    }
    assert spine["anastrozole"] < spine["none"] < spine["gel"]
    assert spine["anastrozole"] < spine["gel + anastrozole"] < spine["gel"]


def test_shipped_male_parameters_are_the_fit_and_reproduce_the_male_targets() -> None:
    """The grid fit around the shipped values returns them; the typical man is within
    max(CI half-width, 1.0 pp) of the published spine loss on anastrozole (M1, -1.7 %)."""
    male = default_male_parameters()
    shipped = {name: male.value(name) for name in FITTED}
    fit = fit_male_parameters(
        CALIBRATION_TRIALS,
        ec50_grid=[shipped["ec50_e2_pg_ml"] + d for d in (-1.0, 0.0, 1.0)],
        n_e_grid=[shipped["n_e"] + d for d in (-1.0, 0.0, 1.0)],
    )
    assert fit.values == shipped
    targets = {t.target_id: t for t in load_male_targets().targets}
    m1 = targets["M1"]
    assert abs(fit.predictions["M1"] - m1.row.value_pct) <= m1.tolerance_pp(True)


def test_trial_reports_observables_with_published_spine_loss_in_older_men() -> None:
    """A spec with sex: male runs anastrozole alone and testosterone with and without it, and
    carries the model observables in its rows; the anastrozole arm's 12-month spine change is
    the published one (Burnett-Bowie 2009: -1.7 %, tolerance 1.0 pp)."""
    spec = parse_trial_spec(
        {
            "name": "men on anastrozole and testosterone",
            "seed": 3,
            "population": {"n": 300, "sex": "male", "age_years": {"mean": 67, "sd": 5}},
            "arms": [
                {"name": "anastrozole", "treatments": [{**ANASTROZOLE, "start_month": 0}]},
                {"name": "gel", "treatments": [{**GEL, "start_month": 0}]},
                {
                    "name": "gel + anastrozole",
                    "treatments": [{**GEL, "start_month": 0}, {**ANASTROZOLE, "start_month": 0}],
                },
            ],
            "outputs": {
                "quantities": [
                    "lumbar_spine",
                    "estradiol",
                    "testosterone",
                    "rankl",
                    "osteoclasts",
                    "osteoblasts",
                    "ctx",
                    "p1np",
                ],
                "months": [12],
            },
        }
    )
    rows = {(r.arm, r.quantity): r for r in run_trial(spec).rows}
    assert rows[("anastrozole", "lumbar_spine")].mean_pct_change == pytest.approx(-1.7, abs=1.0)
    assert rows[("anastrozole", "estradiol")].mean_pct_change < -10
    assert rows[("anastrozole", "testosterone")].mean_pct_change > 40
    assert rows[("anastrozole", "rankl")].mean_pct_change > 0  # less estrogen, more RANKL
    assert rows[("gel", "osteoclasts")].mean_pct_change < 0
    for quantity in ("osteoclasts", "osteoblasts"):  # CTX/P1NP are these cells' proxies
        for arm in ("anastrozole", "gel"):
            assert rows[(arm, quantity)].mean_pct_change == pytest.approx(
                rows[(arm, "ctx" if quantity == "osteoclasts" else "p1np")].mean_pct_change
            )
    assert np.isfinite(rows[("gel + anastrozole", "testosterone")].sd or 0.0)


def test_a_womans_estradiol_row_is_the_inhibitors_suppression() -> None:
    """For a typical postmenopausal woman, estradiol under anastrozole falls by the drug's
    suppression s_AI (the parameter set's value, 85 %); testosterone is not hers to ask for."""
    spec = parse_trial_spec(
        {
            "name": "woman",
            "population": {
                "n": 1,
                "menopausal_status": "postmenopausal",
                "age_years": 64,
                "variability": False,
            },
            "arms": [{"name": "anastrozole", "treatments": [{**ANASTROZOLE, "start_month": 0}]}],
            "outputs": {"quantities": ["estradiol", "rankl", "osteoclasts"], "months": [12]},
        }
    )
    rows = {r.quantity: r for r in run_trial(spec).rows}
    suppression = default_parameter_set().parameters["ai.anastrozole.suppression"].value
    assert rows["estradiol"].mean_pct_change == pytest.approx(-100 * suppression, abs=1e-6)
    assert rows["rankl"].mean_pct_change > 0 and rows["osteoclasts"].mean_pct_change > 0
