"""Per-patient dose events: the same schedule as a regimen, delayed and missed doses, units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bonecast as bc

DENOSUMAB = {"drug": "denosumab", "amount": 60.0, "route": "sc"}


def test_events_reproduce_the_standard_regimen_exactly() -> None:
    population = bc.Population.sample(4, seed=2)
    regimen = bc.simulate(population, bc.Regimen.standard("denosumab"), days=730)
    events = bc.DoseEvents.from_frame(
        pd.DataFrame(
            [
                {"id": i, "time": 0.0, "interval": 182.0, "additional": 4, **DENOSUMAB}
                for i in range(4)
            ]
        )
    )
    by_events = bc.simulate(population, events, days=730)
    np.testing.assert_allclose(
        by_events.values("bmd_lumbar_spine"), regimen.values("bmd_lumbar_spine"), rtol=1e-12
    )


def test_hours_and_days_give_the_same_doses() -> None:
    population = bc.Population.sample(2, seed=2)
    days = bc.DoseEvents.from_records([{"id": 0, "time": 10.0, **DENOSUMAB}])
    hours = bc.DoseEvents.from_records([{"id": 0, "time": 240.0, **DENOSUMAB}], time_unit="hours")
    a = bc.simulate(population, days, days=60).values("denosumab")
    b = bc.simulate(population, hours, days=60).values("denosumab")
    np.testing.assert_array_equal(a, b)
    assert a[:, 1].max() == 0.0  # patient 1 has no record: untreated


def test_a_late_injection_lets_the_drug_fall_and_bone_turnover_rebound() -> None:
    population = bc.Population.sample(1, seed=1, variability=False)
    on_time = [{"id": 0, "time": t, **DENOSUMAB} for t in (0.0, 182.0)]
    late = [{"id": 0, "time": t, **DENOSUMAB} for t in (0.0, 182.0 + 122.0)]
    a = bc.simulate(population, bc.DoseEvents.from_records(on_time), days=300, record_every_days=1)
    b = bc.simulate(population, bc.DoseEvents.from_records(late), days=300, record_every_days=1)
    assert b.values("denosumab")[290, 0] < 0.1 * a.values("denosumab")[290, 0]
    # off-treatment osteoclasts overshoot their untreated level (the rebound), on-time ones do not
    assert b.values("osteoclasts")[300, 0] > a.values("osteoclasts")[300, 0]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": 0, "time": 0.0, "drug": "aspirin", "amount": 1.0}, "dose row 0: drug"),
        ({"id": 0, "time": -1.0, **DENOSUMAB}, "dose row 0: time"),
        ({"id": 0, "time": 0.0, "additional": 3, **DENOSUMAB}, "interval"),
        ({"id": 0, "time": 0.0, "drug": "anastrozole", "amount": 5.0}, "standard dose"),
        ({"id": 0, "time": 0.0, "rate": 1.0, **DENOSUMAB}, "rate"),
    ],
)
def test_a_bad_record_names_its_row_and_field(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bc.DoseEvents.from_records([record])


def test_events_for_unknown_patients_are_refused() -> None:
    events = bc.DoseEvents.from_records([{"id": 7, "time": 0.0, **DENOSUMAB}])
    with pytest.raises(ValueError, match="not in the population"):
        bc.simulate(bc.Population.sample(2, seed=1), events, days=30)


def test_events_add_to_a_regimen() -> None:
    population = bc.Population.sample(2, seed=1)
    extra = bc.DoseEvents.from_records([{"id": 1, "time": 0.0, **DENOSUMAB}])
    result = bc.simulate(population, [bc.Regimen.standard("anastrozole"), extra], days=90)
    assert result.values("denosumab")[-1, 0] == 0.0 < result.values("denosumab")[-1, 1]
    assert (result.values("estradiol")[-1] < result.values("estradiol")[0]).all()


def test_nonmem_column_names_and_mixed_units_are_understood() -> None:
    nonmem = bc.DoseEvents.from_frame(
        pd.DataFrame(
            [{"ID": 0, "TIME": 0.0, "DRUG": "denosumab", "AMT": 60.0, "II": 182.0, "ADDL": 2}]
        )
    )
    (row,) = nonmem.rows
    assert (row.amount, row.interval, row.additional) == (60.0, 182.0, 2)
    hours = bc.DoseEvents.from_records(
        [{"id": 0, "time": 48.0, "drug": "zoledronic_acid", "amount": 4.0, "rate": 16.0}],
        time_unit="hours",
    )
    mixed = nonmem + hours
    assert mixed.rows[-1].time == 2.0 and mixed.rows[-1].rate == 16.0 * 24  # now per day
