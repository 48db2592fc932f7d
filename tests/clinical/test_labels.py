"""Codes in words (bonecast.labels) and plans and marker verdicts in words (clinical.explain)."""

from __future__ import annotations

import re
from datetime import date
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bonecast import labels
from bonecast.clinical.explain import agent_text, marker_verdict
from bonecast.clinical.forecast import DEFAULT_AGENT
from bonecast.clinical.markers import MarkerResult
from bonecast.simulation import DRUGS, SITES, DrugClass, Route


def _shipped_sources() -> list[str]:
    """Every ``source`` text of the shipped clinical data and of the drug catalogue."""
    found: set[str] = set()
    for path in files("bonecast.clinical").joinpath("data").iterdir():
        if path.name.endswith(".yaml"):
            found |= set(re.findall(r'source: "([^"]*)"', path.read_text(encoding="utf-8")))
    found |= {r.source for drug in DRUGS.values() for r in drug.regimens}
    return sorted(found)


SOURCES = _shipped_sources()


def test_the_shipped_data_has_sources_to_cite() -> None:
    assert len(SOURCES) > 50 and any("docs/clinical/" in s for s in SOURCES)


@pytest.mark.parametrize("source", SOURCES)
def test_every_shipped_source_is_cited_without_design_notes(source: str) -> None:
    cited = labels.cite(source)
    assert cited and ".md" not in cited
    assert not re.search(r"\(\s*[;,:]|\(\s*\)", cited), cited  # no empty or dangling brackets


def test_publications_are_named_and_linked() -> None:
    source = "AIBL 2017 Table 3 (PMC5384888 t0015; docs/clinical/aibl-algorithm.md section 1.4)"
    assert labels.cite(source) == "AIBL 2017 Table 3 (PMC5384888 t0015)"
    urls = [url for _, url in labels.links(source)]
    assert "https://doi.org/10.1016/j.jbo.2017.03.001" in urls
    assert "https://pmc.ncbi.nlm.nih.gov/articles/PMC5384888/" in urls
    assert (
        labels.cite("docs/clinical/aibl-algorithm.md section 1.6 monitoring table")
        == labels.OWN_READING
    )


def test_every_site_drug_and_plan_has_words() -> None:
    for site in SITES:
        assert "_" not in labels.site(site) and "_" not in labels.PATIENT_SITES[site]
    for name in DRUGS:
        assert "_" not in labels.drug(name) and "_" not in labels.catalogue_regimen(name)
    for plan in ("continue_ai", "ai_plus_agent", "stop_ai_as_planned", "no_new_treatment"):
        assert "_" not in labels.plan(plan)
    # every route and drug class of the catalogue, the men's testosterone products included
    assert set(labels.ROUTES) == set(Route) and set(labels.DRUG_CLASSES) == set(DrugClass)


def test_regimens_read_in_full_from_the_catalogue() -> None:
    assert labels.catalogue_regimen("zoledronic_acid") == (
        "zoledronic acid 4 mg into a vein (IV) every 6 months"
    )
    assert labels.catalogue_regimen("alendronate") == "alendronate 70 mg by mouth weekly"
    assert labels.catalogue_regimen("goserelin") == (
        "goserelin 3.6 mg injection under the skin every 4 weeks"
    )
    assert agent_text(DEFAULT_AGENT).startswith("zoledronic acid 4 mg into a vein (IV) every 6")


@given(st.floats(min_value=1, max_value=400, allow_nan=False))
def test_every_interval_reads_as_words(days: float) -> None:
    text = labels.interval(days)
    assert text in ("daily", "weekly", "monthly", "yearly") or text.startswith("every ")


def test_form_fields_and_free_text_in_words() -> None:
    assert labels.field("sites.total_hip.bmd_g_cm2") == "Total hip BMD"
    assert labels.field("scans.0.lumbar_spine.t_score") == "Lumbar spine T-score"
    assert labels.field("") == "This form"
    text = labels.words("'continue_ai' keeps the recorded stop; add zoledronic_acid; ctx high")
    assert "continue_ai" not in text and "zoledronic acid" in text and "CTX high" in text
    assert labels.words("serum calcium") == "serum calcium"  # words are left alone


def _marker(pct: float | None, significant: bool | None) -> MarkerResult:
    return MarkerResult(
        marker="ctx",
        unit="ng/mL",
        assay=None,
        latest_value=0.3,
        latest_date=date(2026, 1, 1),
        reference_interval=None,
        within_reference=None,
        pct_change=pct,
        lsc_pct=30,
        significant=significant,
    )


def test_marker_verdicts_in_words_against_their_own_lsc() -> None:
    assert marker_verdict(_marker(-45.0, True)) == "real fall (more than the 30 % LSC)"
    assert marker_verdict(_marker(47.0, True)) == "real rise (more than the 30 % LSC)"
    assert marker_verdict(_marker(-10.0, False)) == "no real change (within the 30 % LSC)"
    assert "no change to judge" in marker_verdict(_marker(None, None))


def test_a_patient_is_described_in_words_and_a_man_never_by_menopausal_status() -> None:
    assert labels.person("male", None) == "man"
    assert labels.person("male", "postmenopausal") == "man"
    assert labels.person("female", "postmenopausal") == "postmenopausal woman"
    assert labels.person("female", None) == "woman, menopausal status not recorded"
