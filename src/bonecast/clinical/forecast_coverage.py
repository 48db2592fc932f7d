"""Calibration check of the personal forecast: does its 5-95 % band cover a hidden scan?

Women are simulated from the forecast's own generative model: a virtual twin of a woman of 62
starting anastrozole (between-patient variability and a posterior parameter draw), her own
random-walk deviation from the twin's course at each site
(:data:`~bonecast.clinical.conditioning.INDIVIDUAL_DRIFT_PCT`), DXA scans at 0, 1, 2 and 3
years on one Hologic scanner with the ISCD default precision error (normal, relative; reported
to 0.001 g/cm2) and s-CTX with its precision error at 0, 1 and 2 years. The scan at 3 years is
hidden; the forecast is made from the others on the day of the 2-year scan, and its 5-95 % band
one year later (``continue_ai``) should hold the hidden scan 90 % of the time at each site.

The simulated women are drawn with another seed than the forecast's twins, so no woman is one of
her own twins. Used by the test suite (a few women) and ``benchmarks/bench_forecast_coverage.py``
(hundreds).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict

from bonecast.clinical.conditioning import INDIVIDUAL_DRIFT_PCT
from bonecast.clinical.forecast import (
    DEFAULT_AGENT,
    DEFAULT_TWINS,
    _plan_treatments,
    _simulate_runs,
    _twins,
    forecast,
)
from bonecast.clinical.markers import marker_data
from bonecast.clinical.patient import DAYS_PER_YEAR, parse_patient
from bonecast.clinical.precision import lsc_table, precision_data
from bonecast.simulation import SITES, default_parameter_set
from bonecast.simulation.solver import Engine

START = date(2020, 1, 6)
SCAN_DAYS = (0, 365, 731, 1096)
"""Scan days from the start of anastrozole; the last one is hidden (one year after ``as_of``)."""
AGE_AT_START = 62.0
T_SCORES = {"lumbar_spine": -1.4, "total_hip": -1.0, "femoral_neck": -1.5}
"""True T-scores at the start (osteopenic, typical of women offered bone protection)."""
CTX_AT_START_NG_ML = 0.40
TRUTH_SEED = 9_001


class Coverage(BaseModel):
    """How often the 5-95 % band held the hidden scan."""

    model_config = ConfigDict(frozen=True)

    women: int
    twins: int
    covered_pct: float
    covered_pct_by_site: dict[str, float]
    below_pct: float
    above_pct: float


def hidden_scan_coverage(
    women: int, twins: int = DEFAULT_TWINS, engine: Engine = "auto"
) -> Coverage:
    """Simulate ``women`` women, hide each one's last scan and check the forecast's band."""
    params = default_parameter_set()
    factor = precision_data().lsc_factor.value
    lsc = lsc_table()
    scan_sd = np.array([[lsc[site].lsc_pct / factor / 100.0] for site in SITES])
    ctx_sd = marker_data().lsc_pct["ctx"].value / factor / 100.0
    drift_sd = np.array([[INDIVIDUAL_DRIFT_PCT[site] / 100.0] for site in SITES])
    as_of = START + timedelta(days=SCAN_DAYS[2])
    hidden_date = START + timedelta(days=SCAN_DAYS[3])
    template = parse_patient(
        {
            "sex": "female",
            "age_years": AGE_AT_START + SCAN_DAYS[2] / DAYS_PER_YEAR,
            "menopausal_status": "postmenopausal",
            "treatments": [{"drug": "anastrozole", "start_date": str(START)}],
            "as_of": str(as_of),
        }
    )
    plans, _ = _plan_treatments(template, START, hidden_date, DEFAULT_AGENT)
    truth = _twins(template, params, AGE_AT_START, T_SCORES, women, TRUTH_SEED)
    (courses,) = _simulate_runs(
        [(truth, plans[0][2])], SCAN_DAYS[-1], list(SCAN_DAYS), TRUTH_SEED, engine
    )
    rng = np.random.default_rng(TRUTH_SEED)
    years = np.diff(SCAN_DAYS, prepend=0) / DAYS_PER_YEAR
    walk = np.cumsum(drift_sd[:, :, None] * np.sqrt(years) * rng.standard_normal((3, women, 4)), 2)
    true_bmd = truth.baseline_bmd_g_cm2[:, :, None] * np.moveaxis(courses.bmd_ratio, 0, 2)
    scans = np.round(
        true_bmd * np.exp(walk) * (1 + scan_sd[:, :, None] * rng.standard_normal(walk.shape)), 3
    )
    ctx = (
        CTX_AT_START_NG_ML
        * courses.osteoclasts.T
        * np.exp(ctx_sd * rng.standard_normal((women, 4)))
    )
    covered = {site: 0 for site in SITES}
    below = above = 0
    for k in range(women):
        patient = parse_patient(
            {
                **template.model_dump(
                    mode="json", include={"sex", "age_years", "menopausal_status", "as_of"}
                ),
                "scans": [
                    {
                        "date": str(START + timedelta(days=SCAN_DAYS[v])),
                        "scanner": "hologic",
                        **{
                            site: {"bmd_g_cm2": float(scans[s, k, v])}
                            for s, site in enumerate(SITES)
                        },
                    }
                    for v in range(3)
                ],
                "treatments": [{"drug": "anastrozole", "start_date": str(START)}],
                "labs": [
                    {
                        "date": str(START + timedelta(days=SCAN_DAYS[v])),
                        "test": "ctx",
                        "value": round(float(ctx[k, v]), 3),
                        "unit": "ng/mL",
                    }
                    for v in range(3)
                ],
            }
        )
        result = forecast(patient, [], horizon_years=1, twins=twins, engine=engine)
        assert result is not None
        for s, site in enumerate(SITES):
            point = next(
                p
                for p in result.points
                if p.plan == "continue_ai" and p.site == site and p.month == 12
            )
            assert point.date == hidden_date
            hidden = scans[s, k, 3]
            covered[site] += point.bmd_low_g_cm2 <= hidden <= point.bmd_high_g_cm2
            below += hidden < point.bmd_low_g_cm2
            above += hidden > point.bmd_high_g_cm2
    n = women * len(SITES)
    return Coverage(
        women=women,
        twins=twins,
        covered_pct=round(100.0 * sum(covered.values()) / n, 1),
        covered_pct_by_site={site: round(100.0 * c / women, 1) for site, c in covered.items()},
        below_pct=round(100.0 * below / n, 1),
        above_pct=round(100.0 * above / n, 1),
    )
