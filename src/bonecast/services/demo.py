"""Synthetic demo data: about 50 made-up women on endocrine therapy and a demo clinician.

Every name, MRN and value is invented (a seeded random generator); nothing comes from real
patients. :func:`seed_demo` writes only into an empty registry, so running it again is harmless.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from bonecast.registry import LabIn, PatientIn, Registry, ScanIn, TreatmentIn, UserIn

DEMO_USERNAME = "demo.clinician"
DEMO_PASSWORD = "bonecast-demo-2026"
DEMO_PATIENTS = 50
_ACTOR = "system:demo-seed"
_FAMILY = (
    "Andersen",
    "Baker",
    "Carvalho",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Novak",
    "Olsen",
    "Patel",
    "Quinn",
    "Rossi",
    "Schmidt",
    "Taylor",
    "Ueda",
    "Varga",
    "Walsh",
    "Young",
    "Zimmermann",
)
_GIVEN = (
    "Ada",
    "Beth",
    "Clara",
    "Dora",
    "Elena",
    "Fiona",
    "Greta",
    "Hana",
    "Iris",
    "Julia",
    "Karin",
    "Lena",
    "Maria",
    "Nora",
)
_AIS = ("anastrozole", "letrozole", "exemestane")
_SITE_SLOPE = {"lumbar_spine": 1.0, "total_hip": 0.8, "femoral_neck": 0.85}
_REFERENCE_BMD = {"lumbar_spine": 1.05, "total_hip": 0.95, "femoral_neck": 0.86}
_SD_BMD = {"lumbar_spine": 0.11, "total_hip": 0.12, "femoral_neck": 0.12}


def _sites(t_base: float, years: float, on_bp: bool, rng: random.Random) -> dict[str, Any]:
    """BMD and T-scores of the three sites after ``years`` on an AI (loss ~2 %/y, less on BP)."""
    loss_pct = (0.5 if on_bp else 2.0) * years + rng.gauss(0, 0.6)
    sites = {}
    for site, weight in _SITE_SLOPE.items():
        t = t_base * weight + rng.gauss(0, 0.3)
        bmd = (_REFERENCE_BMD[site] + t * _SD_BMD[site]) * (1 - loss_pct / 100)
        bmd = min(max(bmd, 0.35), 1.6)
        t_score = round((bmd - _REFERENCE_BMD[site]) / _SD_BMD[site], 1)
        sites[site] = {"bmd_g_cm2": round(bmd, 3), "t_score": max(t_score, -5.5)}
    return sites


def _patient(index: int, today: date, rng: random.Random) -> dict[str, Any]:
    age = rng.randint(48, 82)
    birth = today - timedelta(days=int(age * 365.25) + rng.randint(0, 300))
    return {
        "mrn": f"DEMO-{index + 1:04d}",
        "family_name": _FAMILY[index % len(_FAMILY)],
        "given_name": _GIVEN[(index * 7) % len(_GIVEN)],
        "birth_date": birth,
        "sex": "female",
        "menopausal_status": "postmenopausal",
        "weight_kg": round(rng.uniform(50, 95), 1),
        "height_cm": round(rng.uniform(152, 178), 1),
    }


def _chart(today: date, rng: random.Random) -> tuple[list[TreatmentIn], list[ScanIn], list[LabIn]]:
    """Treatments, 1-4 scans and a few labs of one synthetic patient."""
    ai_start = today - timedelta(days=rng.randint(120, 5 * 365))
    ai = rng.choice(_AIS)
    treatments = [TreatmentIn(drug=ai, route="oral", start_date=ai_start)]
    on_bp = rng.random() < 0.35
    if on_bp:
        bp_start = ai_start + timedelta(days=rng.randint(30, 200))
        if bp_start <= today:
            treatments.append(TreatmentIn(drug="zoledronic_acid", start_date=bp_start))
    t_base = rng.gauss(-1.2, 0.9)
    scanner = rng.choice(("hologic", "lunar"))
    n_scans = rng.randint(1, 4)
    first = ai_start - timedelta(days=rng.randint(0, 60))
    scans = []
    for k in range(n_scans):
        day = first + timedelta(days=k * rng.randint(330, 760))
        if day > today:
            break
        years = max((day - ai_start).days, 0) / 365.25
        scans.append(
            ScanIn.model_validate(
                {
                    "scan_date": day,
                    "scanner": scanner,
                    "scanner_serial": f"{scanner[:3].upper()}-1",
                    "facility": "Demo Bone Clinic",
                    "sites": _sites(t_base, years, on_bp, rng),
                }
            )
        )
    labs = [
        LabIn(
            sample_date=ai_start,
            marker="vitamin_d_25oh",
            value=round(rng.uniform(12, 45), 1),
            unit="ng/mL",
        ),
        LabIn(
            sample_date=ai_start, marker="ctx", value=round(rng.uniform(0.2, 0.7), 2), unit="ng/mL"
        ),
    ]
    return treatments, scans, labs


def seed_demo(registry: Registry, patients: int = DEMO_PATIENTS, seed: int = 2026) -> int:
    """Add the demo clinician and ``patients`` synthetic patients to an empty registry.

    Returns how many patients were added (0 when the registry already has patients or users).
    """
    with registry.session(actor=_ACTOR) as session:
        if session.list_patients(limit=1) or session.list_users():
            return 0
        session.create_user(
            UserIn.model_validate(
                {
                    "username": DEMO_USERNAME,
                    "password": DEMO_PASSWORD,
                    "role": "clinician",
                    "display_name": "Demo Clinician",
                }
            )
        )
        rng = random.Random(seed)
        today = date.today()
        for index in range(patients):
            record = session.create_patient(PatientIn(**_patient(index, today, rng)))
            treatments, scans, labs = _chart(today, rng)
            for treatment in treatments:
                session.add_treatment(record.id, treatment)
            for scan in scans:
                session.add_scan(record.id, scan)
            for lab in labs:
                session.add_lab(record.id, lab)
    return patients
