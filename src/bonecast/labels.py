"""Words for codes: the one place that turns bonecast's codes into what a person reads.

Pages, reports (HTML and PDF), the patient summary, the CLI's text output and CDS Hooks cards
call these functions; machine outputs (JSON, CSV, FHIR) keep the codes. Drug names, doses and
intervals come from the drug catalogue (:mod:`bonecast.simulation.drugs`) or from the
guideline's agent (:class:`bonecast.clinical.guidelines.Agent`), never from a copy here.

Sources are shown as publications (authors, year, table) with a link where one is public;
references to bonecast's own design notes are dropped from what a person reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bonecast.simulation.drugs import DRUGS, DrugClass, Route

SITES = {
    "lumbar_spine": "Lumbar spine",
    "total_hip": "Total hip",
    "femoral_neck": "Femoral neck",
    "one_third_radius": "Forearm (one-third radius)",
}
"""DXA sites."""

PATIENT_SITES = {
    "lumbar_spine": "lower back (spine)",
    "total_hip": "hip",
    "femoral_neck": "thigh bone, just below the hip",
    "one_third_radius": "forearm",
}
"""DXA sites in a patient's words."""

PLANS = {
    "continue_ai": "Keep taking the aromatase inhibitor, no bone medicine",
    "ai_plus_agent": "Aromatase inhibitor as planned, plus a bone medicine",
    "stop_ai_as_planned": "Aromatase inhibitor stops as planned, no bone medicine",
    "no_new_treatment": "Current treatments only",
    "agent": "Add a bone medicine",
    "stop_ai": "Stop the aromatase inhibitor now, other treatments continue",
    "ai_without_testosterone": "Keep the aromatase inhibitor, stop testosterone",
}
"""Forecast plans (:mod:`bonecast.clinical.forecast`)."""

DECISIONS = {
    "start_bta": "Bone-directed therapy indicated",
    "denosumab_transition": "Follow-on treatment after denosumab",
    "monitor": "Monitor: no bone-directed therapy now",
    "get_dxa": "Get a DXA scan",
    "general_pathway": "General osteoporosis pathway",
}
"""Guideline decisions."""

CATEGORIES = {
    "normal": "Normal",
    "osteopenia": "Osteopenia (low bone mass)",
    "osteoporosis": "Osteoporosis",
    "severe_osteoporosis": "Severe osteoporosis (osteoporosis with a fragility fracture)",
    "within_expected_range_for_age": "Within the expected range for age",
    "below_expected_range_for_age": "Below the expected range for age",
}
"""WHO categories (T-score) and ISCD Z-score wording."""

MARKERS = {
    "ctx": "CTX (bone breakdown)",
    "p1np": "P1NP (bone formation)",
    "ntx": "NTX (bone breakdown)",
    "balp": "BSAP (bone formation)",
    "bsap": "BSAP (bone formation)",
    "vitamin_d_25oh": "Vitamin D (25-hydroxy)",
    "calcium": "Calcium",
    "egfr": "Kidney function (eGFR)",
}
"""Laboratory tests."""

OUTCOMES = {"major_osteoporotic": "major osteoporotic fracture", "hip": "hip fracture"}
"""Fracture-risk outcomes."""

ROUTES = {
    Route.ORAL: "by mouth",
    Route.IV: "into a vein (IV)",
    Route.SC: "injection under the skin",
    Route.IM: "injection into a muscle",
    Route.TRANSDERMAL: "gel on the skin",
}
"""Routes of administration."""

DRUG_CLASSES = {
    DrugClass.AROMATASE_INHIBITOR: "aromatase inhibitor",
    DrugClass.SERM: "tamoxifen-type drug (SERM)",
    DrugClass.OVARIAN_SUPPRESSION: "ovarian suppression",
    DrugClass.BISPHOSPHONATE: "bisphosphonate",
    DrugClass.RANKL_ANTIBODY: "RANKL antibody",
    DrugClass.ANDROGEN: "testosterone therapy",
}
"""Drug classes of the catalogue."""

SEVERITIES = {"critical": "Important", "warning": "Caution", "info": "Note"}
"""Advice severities."""

VERIFICATION = {
    "V": "checked against the source",
    "V-2nd": "checked against a summary of the source",
    "V-calc": "calculated from the source",
    "UNVERIFIED": "not yet checked against the source",
    "assumption": "bonecast's assumption",
}
"""How far a number or rule was checked."""


FIELDS = {
    "scan_date": "Scan date",
    "scanner": "Scanner maker",
    "scanner_model": "Scanner model",
    "scanner_serial": "Scanner serial number",
    "facility": "Facility",
    "sites": "Sites",
    "bmd_g_cm2": "BMD",
    "t_score": "T-score",
    "z_score": "Z-score",
    "sample_date": "Sample date",
    "marker": "Test",
    "value": "Value",
    "unit": "Unit",
    "assay": "Assay",
    "drug": "Drug",
    "dose_mg": "Dose",
    "route": "Route",
    "interval_days": "Interval",
    "start_date": "Start date",
    "stop_date": "Stop date",
    "planned_stop_date": "Planned stop date",
    "last_dose_date": "Last dose date",
}
"""Input fields of the registry forms."""

SCANNERS = {"hologic": "Hologic", "lunar": "GE Lunar", "norland": "Norland"}
"""DXA scanner makers."""


_RECORD_KINDS = frozenset({"scans", "labs", "treatments", "patient"})


def field(path: str) -> str:
    """A form field's dotted path in words: ``sites.total_hip.bmd_g_cm2`` is "Total hip BMD"."""
    if not path:
        return "This form"
    parts = [p for p in path.split(".") if not p.isdigit() and p not in _RECORD_KINDS]
    where = [SITES[p] for p in parts if p in SITES]
    what = [FIELDS.get(p, p.replace("_", " ")) for p in parts if p not in SITES]
    if where and what and what[0] == "Sites":
        what = what[1:]
    return " ".join([*where, *what]) or path


def drug(name: str) -> str:
    """A drug's name as read ("zoledronic acid"); the catalogue's names, spaced."""
    return name.replace("_", " ")


def site(code: str) -> str:
    """A DXA site ("Lumbar spine")."""
    return SITES.get(code, code.replace("_", " ").capitalize())


def plan(code: str) -> str:
    """A forecast plan in words."""
    return PLANS.get(code, code.replace("_", " ").capitalize())


def decision(code: str) -> str:
    """A guideline decision in words."""
    return DECISIONS.get(code, code.replace("_", " ").capitalize())


def category(code: object) -> str:
    """A WHO or Z-score category in words ("not applicable" for none)."""
    if code is None:
        return "not applicable"
    value = str(getattr(code, "value", code))
    return CATEGORIES.get(value, value.replace("_", " "))


def marker(code: str) -> str:
    """A laboratory test or bone turnover marker in words."""
    return MARKERS.get(code, code.replace("_", " "))


def outcome(code: str) -> str:
    """A fracture outcome in words."""
    return OUTCOMES.get(code, code.replace("_", " "))


def person(sex: str, menopausal_status: str | None) -> str:
    """Who the patient is, for a page heading: "man", "postmenopausal woman", or a woman whose
    menopausal status is missing ("woman, menopausal status not recorded"). Menopausal status
    does not apply to men."""
    if sex == "male":
        return "man"
    if menopausal_status:
        return f"{menopausal_status} woman"
    return "woman, menopausal status not recorded"


def interval(days: float | None) -> str:
    """A dosing interval in words: "daily", "weekly", "every 6 months", "yearly"."""
    if days is None:
        return "once"
    known = {1: "daily", 7: "weekly", 28: "every 4 weeks", 84: "every 12 weeks"}
    if round(days) in known:
        return known[round(days)]
    if 28 <= days <= 31:
        return "monthly"
    if 360 <= days <= 370:
        return "yearly"
    months = days / 30.4375
    if abs(months - round(months)) < 0.15:
        return f"every {round(months)} months"
    return f"every {days:g} days"


def regimen(name: str, dose_mg: float, route: Route | str, interval_days: float | None) -> str:
    """A regimen in full: "zoledronic acid 4 mg into a vein (IV) every 6 months"."""
    how = ROUTES.get(Route(route), str(route))
    return f"{drug(name)} {dose_mg:g} mg {how} {interval(interval_days)}"


def catalogue_regimen(name: str) -> str:
    """The first (standard) regimen of a catalogue drug, in words."""
    standard = DRUGS[name].regimens[0]
    return regimen(name, standard.dose_mg, standard.route, standard.interval_days)


@dataclass(frozen=True)
class Publication:
    """A published source: how to cite it and where to read it (``url`` may be empty)."""

    citation: str
    url: str = ""


PUBLICATIONS: dict[str, Publication] = {
    "AIBL 2025": Publication(
        "Hadji P, Aapro M, Al-Daghri N, et al. J Bone Oncol 2025;53:100694",
        "https://doi.org/10.1016/j.jbo.2025.100694",
    ),
    "AIBL 2017": Publication(
        "Hadji P, Aapro MS, Body J-J, et al. J Bone Oncol 2017;7:1-12",
        "https://doi.org/10.1016/j.jbo.2017.03.001",
    ),
    "ASCO 2019": Publication(
        "Shapiro CL, Van Poznak C, Lacchetti C, et al. J Clin Oncol 2019;37:2916-2946",
        "https://doi.org/10.1200/JCO.19.01696",
    ),
    "ECTS 2021": Publication(
        "Tsourdi E, Zillikens MC, Meier C, et al. J Clin Endocrinol Metab 2021;106:264-281"
    ),
    "WHO 1994": Publication("WHO Technical Report Series 843, 1994"),
    "ISCD": Publication(
        "International Society for Clinical Densitometry, Official Positions",
        "https://iscd.org/official-positions/",
    ),
}
"""Publications the rule data names by short name (the key), with the full citation."""

OWN_READING = "bonecast's reading of the guidelines (no single published source)"
"""Shown when a source names only bonecast's own design notes."""

_DESIGN_NOTE = re.compile(
    r"(?:,\s*|\s+(?:and|to)\s+|\s+)?(?:via\s+)?"
    r"(?:docs/(?:clinical|model)/[\w-]+\.md|\b(?:clinical|model)\.md)"
    r"(?:\s+(?:sections?\s+)?\d+(?:\.\d+)?(?:\s*(?:,|and|to|-|–)\s*\d+(?:\.\d+)?)*)?"
    r"(?:\s+(?:monitoring table|engine default|engine rule|pseudo-code|placeholder|"
    r"implementation note|and open question \d+|regimen list|rule \d+))?"
)
"""A citation of bonecast's own documentation: design notes, not a publication to look up."""
_EMPTY_PARENS = re.compile(r"\s*\(\s*[;,]?\s*\)")
_PMC = re.compile(r"\bPMC(\d+)\b")
_PMID = re.compile(r"\bPMID:?\s*(\d+)\b")
_DOI = re.compile(r"\bdoi:\s*(10\.\S+?)[,;)]?(?:\s|$)")


def _without_design_notes(source: str) -> str:
    text = _DESIGN_NOTE.sub("", source)
    text = re.sub(r"\(\s*[;,:]\s*", "(", text)
    text = re.sub(r"\s*[;,]\s*\)", ")", text)
    text = _EMPTY_PARENS.sub("", text)
    text = re.sub(r"\s+of\s*$", "", text.strip())
    text = text.strip(" ;,:")
    if text.startswith("(") and text.endswith(")") and text.count("(") == 1:
        text = text[1:-1]
    return text


def cite(source: str) -> str:
    """A rule's or number's source as a person reads it: publications, never design notes."""
    text = _without_design_notes(source)
    return text or OWN_READING


def links(source: str) -> list[tuple[str, str]]:
    """The public links of a source: (label, URL) for each publication, PMC, PMID and DOI."""
    found: list[tuple[str, str]] = []
    for key, publication in PUBLICATIONS.items():
        if key in source and publication.url:
            found.append((publication.citation, publication.url))
    found += [
        (f"PMC{n}", f"https://pmc.ncbi.nlm.nih.gov/articles/PMC{n}/") for n in _PMC.findall(source)
    ]
    found += [
        (f"PubMed {n}", f"https://pubmed.ncbi.nlm.nih.gov/{n}/") for n in _PMID.findall(source)
    ]
    found += [(f"doi:{d}", f"https://doi.org/{d}") for d in _DOI.findall(source)]
    unique: dict[str, tuple[str, str]] = {}
    for label, url in found:
        unique.setdefault(url, (label, url))
    return list(unique.values())


_CODES: dict[str, str] = {
    **{code: label.lower() for code, label in SITES.items()},
    **{name: drug(name) for name in DRUGS},
    **{code: label.lower() for code, label in PLANS.items() if "_" in code},
    **{code: label.lower() for code, label in DECISIONS.items() if "_" in code},
    **{code: label for code, label in FIELDS.items() if "_" in code},
    **{code: MARKERS[code].split(" (")[0] for code in ("ctx", "p1np", "ntx", "balp")},
    **{code: label for code, label in MARKERS.items() if "_" in code},
}
_CODE_PATTERN = re.compile(
    r"(?<!\w)(?:"
    + "|".join(re.escape(c) for c in sorted(_CODES, key=len, reverse=True))
    + r")(?!\w)"
)


def words(text: str) -> str:
    """Free text from the engine with every code replaced by its words and sources cited."""
    return _CODE_PATTERN.sub(lambda m: _CODES[m.group(0)], cite(text) if text else text)
