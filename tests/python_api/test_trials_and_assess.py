"""load_trial, run_trial and assess from the top-level API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bonecast as bc
from bonecast.simulation.trials import RESULT_COLUMNS

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_run_trial_from_a_mapping_gives_the_contract_rows_as_a_frame() -> None:
    spec = {
        "name": "adherence",
        "seed": 1,
        "population": {"n": 40, "menopausal_status": "postmenopausal", "age_years": 64},
        "arms": [
            {
                "name": "persistent",
                "treatments": [
                    {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
                ],
            },
            {
                "name": "stops",
                "treatments": [
                    {
                        "drug": "anastrozole",
                        "dose_mg": 1,
                        "interval_days": 1,
                        "start_month": 0,
                        "adherence": {"discontinuation_per_year": 1.0},
                    }
                ],
            },
        ],
        "outputs": {"quantities": ["lumbar_spine"], "months": [24]},
    }
    frame = bc.run_trial(spec).to_frame()
    assert list(frame.columns) == list(RESULT_COLUMNS)
    loss = frame.set_index("arm")["mean_pct_change"]
    assert loss["stops"] > loss["persistent"]  # less bone lost when patients stop early


def test_load_trial_reads_a_yaml_file() -> None:
    spec = bc.load_trial(EXAMPLES / "trials" / "atac_like.yaml")
    assert isinstance(spec, bc.TrialSpec) and spec.arms[0].name == "anastrozole"


def test_assess_accepts_a_path_and_a_mapping() -> None:
    path = EXAMPLES / "patients" / "osteoporotic.json"
    from_path = bc.assess(path)
    from_mapping = bc.assess(json.loads(path.read_text()))
    assert from_path.model_dump() == from_mapping.model_dump()
    with pytest.raises(ValueError):
        bc.assess({"age_years": "old"})
