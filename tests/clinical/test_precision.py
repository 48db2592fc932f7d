"""Precision study, least significant change and real change between scans
(docs/clinical/scores.md section 3)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bonecast.clinical import PrecisionError, load_precision_study, lsc_table, site_precision
from bonecast.clinical.patient import Scan
from bonecast.clinical.precision import SiteChange, precision_data, scan_changes
from bonecast.clinical.scores import score_scan


def _duplicates(n: int, difference_g_cm2: float, level: float = 1.0) -> dict[str, list[float]]:
    return {f"p{j}": [level, level + difference_g_cm2] for j in range(n)}


def test_duplicate_study_rms_sd_and_lsc() -> None:
    """30 x 2 with a 0.02 g/cm2 difference each: SD_j^2 = 0.02^2 / 2, RMS-SD = 0.01414."""
    result = site_precision("lumbar_spine", _duplicates(30, 0.02))
    assert result.degrees_of_freedom == 30
    assert result.rms_sd_g_cm2 == pytest.approx(0.02 / math.sqrt(2))
    assert result.lsc_g_cm2 == pytest.approx(2.77 * 0.02 / math.sqrt(2))
    cv = (0.02 / math.sqrt(2)) / 1.01
    assert result.rms_cv_pct == pytest.approx(100 * cv)
    assert result.lsc_pct == pytest.approx(2.77 * 100 * cv)


def test_triplicate_study_uses_the_root_mean_square_not_the_mean_sd() -> None:
    """15 x 3: half the patients with SD 0.01, half with SD 0.03 -> RMS-SD sqrt(0.0005)."""
    study = {f"a{j}": [0.99, 1.00, 1.01] for j in range(8)}
    study |= {f"b{j}": [0.97, 1.00, 1.03] for j in range(7)}
    result = site_precision("total_hip", study)
    assert result.degrees_of_freedom == 30
    expected = math.sqrt((8 * 0.01**2 + 7 * 0.03**2) / 15)
    assert result.rms_sd_g_cm2 == pytest.approx(expected)
    assert result.rms_sd_g_cm2 > (8 * 0.01 + 7 * 0.03) / 15  # the arithmetic mean under-estimates


def test_study_too_small_is_rejected() -> None:
    with pytest.raises(PrecisionError, match="20 degrees of freedom"):
        site_precision("femoral_neck", _duplicates(20, 0.01))


def test_patient_with_one_scan_is_rejected() -> None:
    study = _duplicates(30, 0.01) | {"lonely": [0.9]}
    with pytest.raises(PrecisionError, match="lonely"):
        site_precision("femoral_neck", study)


def test_default_lsc_is_iscd_minimum_precision_times_2_77() -> None:
    defaults = precision_data().default_lsc_pct
    for site, precision_pct in {"lumbar_spine": 1.9, "total_hip": 1.8, "femoral_neck": 2.5}.items():
        assert defaults[site].value == pytest.approx(2.77 * precision_pct, abs=0.05)
        assert defaults[site].verification == "UNVERIFIED"
    table = lsc_table()
    assert {site: entry.lsc_pct for site, entry in table.items()} == {
        "lumbar_spine": 5.3,
        "total_hip": 5.0,
        "femoral_neck": 6.9,
    }
    assert not any(entry.facility_study for entry in table.values())


def test_precision_csv_with_sites_missing_falls_back_to_defaults(tmp_path: Path) -> None:
    path = tmp_path / "study.csv"
    rows = ["patient_id,site,bmd_g_cm2"]
    for j in range(30):
        rows += [f"p{j},lumbar_spine,1.000", f"p{j},lumbar_spine,1.020"]
    path.write_text("\n".join(rows) + "\n")
    table = lsc_table(load_precision_study(path))
    assert table["lumbar_spine"].facility_study
    assert table["lumbar_spine"].lsc_g_cm2 == pytest.approx(2.77 * 0.02 / math.sqrt(2))
    assert not table["total_hip"].facility_study and table["total_hip"].lsc_pct == 5.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("patient,site,bmd\n", "missing columns"),
        ("patient_id,site,bmd_g_cm2\np1,radius,0.7\n", "unknown site 'radius'"),
        ("patient_id,site,bmd_g_cm2\np1,total_hip,heavy\n", "not a number"),
        ("patient_id,site,bmd_g_cm2\np1,total_hip,2.7\n", "outside 0.2-2.0"),
    ],
)
def test_bad_precision_csv(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "study.csv"
    path.write_text(content)
    with pytest.raises(PrecisionError, match=message):
        load_precision_study(path)


def _scan(
    day: str,
    spine: float | dict[str, Any],
    scanner: str = "hologic",
    serial: str | None = None,
    **sites: Any,
) -> Scan:
    lumbar_spine = spine if isinstance(spine, dict) else {"bmd_g_cm2": spine}
    data = {
        "date": day,
        "scanner": scanner,
        "scanner_id": serial,
        "lumbar_spine": lumbar_spine,
        **sites,
    }
    return Scan.model_validate_json(json.dumps(data))


def _changes(*scans: Scan) -> list[SiteChange]:
    return scan_changes(scans, [score_scan(s) for s in scans], lsc_table())


def test_change_is_real_when_it_reaches_the_default_lsc() -> None:
    (real,) = _changes(_scan("2024-01-10", 1.000), _scan("2025-01-10", 0.946))
    assert real.pct_change == pytest.approx(-5.4)
    assert real.lsc_pct == 5.3 and real.significant
    assert real.annualised_pct_change == pytest.approx(-5.4 * 365.25 / 366)
    (noise,) = _changes(_scan("2024-01-10", 1.000), _scan("2025-01-10", 0.950))
    assert noise.pct_change == pytest.approx(-5.0) and noise.significant is False


def test_gain_beyond_lsc_is_real_too() -> None:
    (change,) = _changes(_scan("2024-01-10", 0.900), _scan("2026-01-10", 0.960))
    assert change.significant and change.change_g_cm2 == pytest.approx(0.060)


def test_facility_lsc_is_absolute() -> None:
    scans = (_scan("2024-01-10", 1.000), _scan("2025-01-10", 0.970))
    table = lsc_table({"lumbar_spine": site_precision("lumbar_spine", _duplicates(30, 0.02))})
    (change,) = scan_changes(scans, [score_scan(s) for s in scans], table)
    assert change.lsc_g_cm2 == pytest.approx(0.0392, abs=1e-4)
    assert change.significant is False  # |-0.030| < 0.039 although 3 % ...
    assert change.lsc_pct == pytest.approx(3.92, abs=0.01)


@pytest.mark.parametrize(
    ("earlier", "later", "why"),
    [
        (
            _scan("2024-01-10", 1.0, "hologic"),
            _scan("2025-01-10", 0.9, "lunar"),
            "different makers",
        ),
        (
            _scan("2024-01-10", 1.0, serial="A"),
            _scan("2025-01-10", 0.9, serial="B"),
            "different scanners",
        ),
    ],
)
def test_scans_from_different_scanners_are_not_compared(
    earlier: Scan, later: Scan, why: str
) -> None:
    (change,) = _changes(earlier, later)
    assert change.comparable is False and change.significant is None and change.pct_change is None
    assert why in (change.note or "")


def test_only_sites_on_both_scans_are_compared_and_consecutive_pairs_only() -> None:
    hip = {"total_hip": {"bmd_g_cm2": 0.9}}
    changes = _changes(
        _scan("2023-01-10", 1.0, **hip), _scan("2024-01-10", 0.99), _scan("2025-01-10", 0.98, **hip)
    )
    assert [(c.site, c.from_date, c.to_date) for c in changes] == [
        ("lumbar_spine", date(2023, 1, 10), date(2024, 1, 10)),
        ("lumbar_spine", date(2024, 1, 10), date(2025, 1, 10)),
    ]


def test_spine_compared_on_the_vertebrae_kept_in_the_later_scan() -> None:
    def spine(l3_t_score: float, bmds: tuple[float, ...]) -> dict[str, Any]:
        t_scores = (-1.5, -1.6, l3_t_score, -1.5)
        vertebrae = {
            f"L{i}": {"t_score": t, "bmd_g_cm2": b}
            for i, (t, b) in enumerate(zip(t_scores, bmds, strict=True), start=1)
        }
        return {"bmd_g_cm2": 0.9, "vertebrae": vertebrae}

    earlier = _scan("2024-01-10", spine(-1.4, (0.90, 0.89, 0.92, 0.91)))
    later = _scan("2025-01-10", spine(0.1, (0.84, 0.83, 1.10, 0.85)))  # L3 now artefactual
    (change,) = _changes(earlier, later)
    assert change.comparable
    assert change.bmd_from_g_cm2 == pytest.approx((0.90 + 0.89 + 0.91) / 3)
    assert change.bmd_to_g_cm2 == pytest.approx((0.84 + 0.83 + 0.85) / 3)
    assert "L1+L2+L4" in (change.note or "")


def test_spine_subset_not_comparable_without_earlier_vertebral_bmds() -> None:
    later = _scan(
        "2025-01-10",
        {"vertebrae": {"L1": {"t_score": -1.5}, "L2": {"t_score": -1.6}, "L3": {"t_score": 0.2}}},
    )
    (change,) = _changes(_scan("2024-01-10", 0.95), later)
    assert change.comparable is False
    assert "not given on both scans" in (change.note or "")
