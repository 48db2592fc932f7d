"""After stopping: drug-specific bisphosphonate persistence (surface residence half-life per drug),
and parameter sets that share one half-life between the drugs (before model 1.3) still load."""

from __future__ import annotations

import yaml

from bonecast.simulation.drugs import BISPHOSPHONATES
from bonecast.simulation.parameters import load_parameter_set


def test_a_set_with_one_shared_surface_half_life_loads_it_for_every_drug(tmp_path, params):
    data = params.model_dump(mode="json")
    for drug in BISPHOSPHONATES:
        del data["parameters"][f"bp.{drug}.surface_half_life_days"]
    data["parameters"]["bp_surface_half_life_days"] = {
        "value": 75.0,
        "unit": "day",
        "symbol": "t_s",
        "description": "Residence half-life of drug on the resorbable bone surface",
        "source": "assump",
    }
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    older = load_parameter_set(path)
    for drug in BISPHOSPHONATES:
        entry = older.parameters[f"bp.{drug}.surface_half_life_days"]
        assert entry.value == 75.0 and not entry.calibrate
        assert "before model 1.3" in entry.source
    assert "bp_surface_half_life_days" not in older.parameters


def test_surface_half_life_priors_follow_the_published_affinity_order(params):
    """Nancollas et al., Bone 2006;38:617: zoledronate > alendronate > ibandronate > risedronate."""
    order = ("zoledronic_acid", "alendronate", "ibandronate", "risedronate")
    values = [params.parameters[f"bp.{d}.surface_half_life_days"].value for d in order]
    assert values == sorted(values, reverse=True)
    for drug in order:
        assert "Nancollas" in params.parameters[f"bp.{drug}.surface_half_life_days"].source
