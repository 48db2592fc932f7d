"""The compiled (Numba) engine against the NumPy reference path (issue 6, item 1).

Every site and the turnover markers must agree within 0.01 percentage points, on varied
populations, for every drug class, natural menopause, start rules and sub-daily steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")

from bonecast.simulation import (
    SITES,
    Distribution,
    PopulationSpec,
    Route,
    StartRule,
    Treatment,
    VirtualPopulation,
    default_parameter_set,
    month_to_day,
    sample_population,
    simulate,
    simulate_arms,
    solver,
)
from bonecast.simulation.engine_numba import drop_stale_kernels
from bonecast.simulation.solver import SimulationResult, resolve_engine

TOLERANCE_PP = 0.01
"""Largest accepted difference, percentage points (BMD % change and marker % change)."""
N = 200

ANASTROZOLE = dict(drug="anastrozole", dose_mg=1.0, interval_days=1.0)
LETROZOLE = dict(drug="letrozole", dose_mg=2.5, interval_days=1.0)
EXEMESTANE = dict(drug="exemestane", dose_mg=25.0, interval_days=1.0)
ZOLEDRONIC_ACID = dict(drug="zoledronic_acid", dose_mg=4.0, interval_days=182.0, route=Route.IV)
DENOSUMAB = dict(drug="denosumab", dose_mg=60.0, interval_days=182.0)
TAMOXIFEN = dict(drug="tamoxifen", dose_mg=20.0, interval_days=1.0)
RISEDRONATE = dict(drug="risedronate", dose_mg=35.0, interval_days=7.0, adherence=0.7)
ALENDRONATE = dict(drug="alendronate", dose_mg=70.0, interval_days=7.0, adherence=0.8)
IBANDRONATE = dict(drug="ibandronate", dose_mg=150.0, interval_days=30.0)
GOSERELIN = dict(drug="goserelin", dose_mg=3.6, interval_days=28.0)


def _population(status: str = "postmenopausal", **extra: object) -> VirtualPopulation:
    age = Distribution(mean=64.0, sd=8.0) if status == "postmenopausal" else 42.0
    spec = PopulationSpec(
        n=N,
        menopausal_status=status,
        age_years=age,
        variability=True,
        **extra,
    )
    return sample_population(spec, default_parameter_set(), 7)


@pytest.fixture(scope="module")
def postmenopausal() -> VirtualPopulation:
    return _population()


def _plan(*drugs: dict[str, object], start: float = 0, stop: float = 60) -> list[Treatment]:
    return [Treatment(**d, start_month=start, stop_month=stop) for d in drugs]


def _assert_close(numpy_run: SimulationResult, numba_run: SimulationResult) -> None:
    np.testing.assert_array_equal(numpy_run.days, numba_run.days)
    for site in SITES:
        diff = np.abs(numpy_run.bmd_pct_change(site) - numba_run.bmd_pct_change(site))
        assert diff.max() < TOLERANCE_PP, f"{site}: {diff.max():.2e} pp"
    for name in ("osteoclasts", "osteoblasts"):
        diff = 100.0 * np.abs(getattr(numpy_run, name) - getattr(numba_run, name))
        assert diff.max() < TOLERANCE_PP, f"{name}: {diff.max():.2e} pp"
    np.testing.assert_allclose(
        numba_run.denosumab_mg_l, numpy_run.denosumab_mg_l, rtol=1e-6, atol=1e-9
    )
    assert numba_run.bp_bone_mg.keys() == numpy_run.bp_bone_mg.keys()
    for drug, amount in numpy_run.bp_bone_mg.items():
        np.testing.assert_allclose(numba_run.bp_bone_mg[drug], amount, rtol=1e-6, atol=1e-9)


def _both(
    population: VirtualPopulation,
    plan: Sequence[Treatment],
    horizon: int,
    **kwargs: object,
) -> tuple[SimulationResult, SimulationResult]:
    reference = simulate(population, plan, horizon, seed=3, engine="numpy", **kwargs)
    compiled = simulate(population, plan, horizon, seed=3, engine="numba", **kwargs)
    _assert_close(reference, compiled)
    return reference, compiled


MONTHLY = [month_to_day(m) for m in range(0, 85)]


@pytest.mark.parametrize(
    "plan",
    [
        _plan(ANASTROZOLE),
        _plan(ANASTROZOLE, ZOLEDRONIC_ACID),
        _plan(ANASTROZOLE, DENOSUMAB),  # stops at month 60: rebound over months 60-84
        _plan(TAMOXIFEN),
        _plan(LETROZOLE, RISEDRONATE),
        _plan(EXEMESTANE, ALENDRONATE, IBANDRONATE),
        _plan(ANASTROZOLE, stop=24) + _plan(TAMOXIFEN, start=24, stop=60),
    ],
    ids=[
        "anastrozole",
        "anastrozole+zoledronic_acid",
        "anastrozole+denosumab_then_stop",
        "tamoxifen",
        "letrozole+risedronate_weekly_adherence",
        "exemestane+alendronate+ibandronate",
        "anastrozole_then_tamoxifen",
    ],
)
def test_compiled_matches_numpy_postmenopausal(
    postmenopausal: VirtualPopulation, plan: list[Treatment]
) -> None:
    """Every site and both markers within 0.01 pp over 7 years, monthly records."""
    _both(postmenopausal, plan, month_to_day(84), record_days=MONTHLY)


def test_compiled_matches_numpy_every_day_records(postmenopausal: VirtualPopulation) -> None:
    """Daily recording (the kernel copies every day's state on its way) gives the same
    trajectories."""
    _both(postmenopausal, _plan(ANASTROZOLE, DENOSUMAB, stop=12), month_to_day(24))


def test_records_on_irregular_days_whatever_the_snapshot_budget(
    postmenopausal: VirtualPopulation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records on arbitrary days match the NumPy path, and cutting the kernel's blocks to one
    recorded day per call (the memory bound) changes nothing beyond rounding."""
    days = [0, 1, 2, 17, 45, 46, 200, 401, 730, 1000, month_to_day(36)]
    plan = _plan(ANASTROZOLE, ZOLEDRONIC_ACID, stop=36)
    _, whole = _both(postmenopausal, plan, month_to_day(36), record_days=days)
    monkeypatch.setattr(solver, "SNAPSHOT_BYTES", 1)
    cut = simulate(postmenopausal, plan, month_to_day(36), seed=3, engine="numba", record_days=days)
    np.testing.assert_array_equal(cut.days, whole.days)
    np.testing.assert_allclose(cut.bmd_ratio, whole.bmd_ratio, rtol=1e-12)
    np.testing.assert_allclose(cut.osteoclasts, whole.osteoclasts, rtol=1e-12)


def test_compiled_matches_numpy_sub_daily_step(postmenopausal: VirtualPopulation) -> None:
    """dt_days < 1 (two steps per day) with denosumab and zoledronic acid."""
    plan = _plan(ANASTROZOLE, DENOSUMAB, stop=24) + _plan(ZOLEDRONIC_ACID, start=24, stop=36)
    _both(postmenopausal, plan, month_to_day(48), dt_days=0.5, record_days=MONTHLY[:49])


def test_compiled_matches_numpy_goserelin_premenopausal() -> None:
    """Goserelin + anastrozole in premenopausal women (ovarian suppression input)."""
    plan = _plan(GOSERELIN, ANASTROZOLE, ZOLEDRONIC_ACID, stop=36)
    _both(_population("premenopausal"), plan, month_to_day(60), record_days=MONTHLY[:61])


def test_compiled_matches_numpy_natural_menopause() -> None:
    """Natural menopause (time-varying E2_base, docs/model/equations.md section 5) during
    tamoxifen."""
    population = _population("premenopausal", final_menstrual_period_month=18.0)
    assert np.isfinite(population.fmp_day).all()
    plan = _plan(TAMOXIFEN, stop=48)
    _both(population, plan, month_to_day(72), record_days=MONTHLY[:73])


def test_start_rule_fires_identically(postmenopausal: VirtualPopulation) -> None:
    """A start_when rule fires on the same day for the same patients in both engines."""
    rule = StartRule(t_score_below=-1.5, check_every_months=6.0, first_check_month=6.0)
    plan = [
        Treatment(**ANASTROZOLE, start_month=0),
        Treatment(**ZOLEDRONIC_ACID, start_when=rule),
    ]
    days = list(range(0, month_to_day(72) + 1, 7))
    reference, compiled = _both(postmenopausal, plan, month_to_day(72), record_days=days)
    started_ref = reference.bp_bone_mg["zoledronic_acid"] > 0
    started_cmp = compiled.bp_bone_mg["zoledronic_acid"] > 0
    np.testing.assert_array_equal(started_ref, started_cmp)
    fired = started_ref[-1]
    assert 0 < fired.sum() < N, "the rule should fire for some patients, not all"


def test_simulate_arms_compiled_matches_numpy(postmenopausal: VirtualPopulation) -> None:
    """Several arms in one run (calibration path)."""
    arms = [_plan(ANASTROZOLE), _plan(ANASTROZOLE, DENOSUMAB), _plan(TAMOXIFEN, RISEDRONATE)]
    arm_of = np.arange(N, dtype=np.int64) % 3
    horizon = month_to_day(36)
    kwargs = dict(seed=5, record_days=MONTHLY[:37])
    reference = simulate_arms(postmenopausal, arms, arm_of, horizon, engine="numpy", **kwargs)
    compiled = simulate_arms(postmenopausal, arms, arm_of, horizon, engine="numba", **kwargs)
    _assert_close(reference, compiled)


def test_chunks_with_and_without_the_drugs(postmenopausal: VirtualPopulation) -> None:
    """Patients in contiguous arms: some 32-patient chunks carry no denosumab or bisphosphonate
    (their steps are skipped), one chunk mixes both arms; all must match NumPy."""
    arms = [_plan(ANASTROZOLE), _plan(ANASTROZOLE, DENOSUMAB, ZOLEDRONIC_ACID, stop=24)]
    arm_of = (np.arange(N) >= 100).astype(np.int64)  # chunk 3 (patients 96-127) is mixed
    horizon = month_to_day(48)
    kwargs = dict(seed=2, record_days=MONTHLY[:49])
    reference = simulate_arms(postmenopausal, arms, arm_of, horizon, engine="numpy", **kwargs)
    compiled = simulate_arms(postmenopausal, arms, arm_of, horizon, engine="numba", **kwargs)
    _assert_close(reference, compiled)
    assert np.all(compiled.denosumab_mg_l[:, :100] == 0.0)
    assert np.all(compiled.denosumab_mg_l[1:, 100:] > 0.0)


def test_one_patient_fills_a_chunk() -> None:
    """A single patient (31 padding lanes) matches NumPy; padding never leaks into results."""
    one = sample_population(
        PopulationSpec(n=1, menopausal_status="postmenopausal", age_years=64.0),
        default_parameter_set(),
        7,
    )
    _both(one, _plan(ANASTROZOLE, DENOSUMAB, RISEDRONATE, stop=36), month_to_day(60))


def test_progress_counts_every_day(postmenopausal: VirtualPopulation) -> None:
    """The compiled engine reports all simulated days to ``progress``."""
    seen: list[int] = []
    horizon = month_to_day(13)
    simulate(
        postmenopausal,
        _plan(ANASTROZOLE, ZOLEDRONIC_ACID),
        horizon,
        record_days=[0, horizon],
        progress=seen.append,
        engine="numba",
    )
    assert sum(seen) == horizon


def test_engine_selection() -> None:
    """'auto' picks the compiled engine when Numba imports; unknown names are refused."""
    assert resolve_engine("auto") == "numba"
    assert resolve_engine("numpy") == "numpy"
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("jax")


def test_compiled_matches_numpy_men() -> None:
    """Men: aromatisation, HPG feedback and testosterone replacement in both engines."""
    men = sample_population(
        PopulationSpec(n=N, sex="male", age_years=Distribution(mean=68.0, sd=6.0)),
        default_parameter_set(),
        7,
    )
    gel = dict(drug="testosterone_gel", dose_mg=50.0, interval_days=1.0)
    cypionate = dict(drug="testosterone_cypionate", dose_mg=200.0, interval_days=14.0)
    plan = _plan(ANASTROZOLE, stop=24) + _plan(gel, start=6, stop=36) + _plan(cypionate, start=36)
    reference, compiled = _both(men, plan, month_to_day(60), record_days=MONTHLY[:61])
    np.testing.assert_allclose(compiled.estradiol_pg_ml, reference.estradiol_pg_ml, rtol=1e-12)


def test_compiled_matches_numpy_modeling_based_formation() -> None:
    """Modeling-based formation (model.py docstring) switched on strongly in both engines:
    ten years of denosumab with a stop, and alendronate, with its gains far above 10 pp."""
    strong = default_parameter_set().with_values(modeling_t=0.3, modeling_c=0.2)
    spec = PopulationSpec(n=N, menopausal_status="postmenopausal", age_years=72.0)
    population = sample_population(spec, strong, 7)
    plan = _plan(DENOSUMAB, stop=72) + _plan(ALENDRONATE, start=96, stop=120)
    yearly = [month_to_day(m) for m in range(0, 121, 12)]
    reference, _ = _both(population, plan, month_to_day(120), record_days=yearly)
    assert reference.bmd_pct_change("lumbar_spine").mean() > 10.0


def test_cached_kernels_of_other_equations_are_dropped(tmp_path: Path) -> None:
    """An edit to the inlined equations invalidates the on-disk kernels; nothing else does."""
    kernels = [tmp_path / "engine_numba.advance_block-1.py311.nbi", tmp_path / "engine_numba.x.nbc"]
    other = tmp_path / "model.other-1.py311.nbi"
    for path in (*kernels, other):
        path.write_bytes(b"compiled")
    assert drop_stale_kernels(tmp_path, "engine_numba", "sources v1")  # no record: dropped
    assert not any(path.exists() for path in kernels) and other.exists()
    for path in kernels:
        path.write_bytes(b"compiled from v1")
    assert not drop_stale_kernels(tmp_path, "engine_numba", "sources v1")
    assert all(path.exists() for path in kernels)
    assert drop_stale_kernels(tmp_path, "engine_numba", "sources v2")
    assert not any(path.exists() for path in kernels) and other.exists()
