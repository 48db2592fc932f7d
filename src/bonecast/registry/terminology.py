"""Codes that name the registry's data in FHIR: LOINC, RxNorm, SNOMED CT, UCUM
(docs/clinical/interoperability.md section 6).

Every code here comes from docs/clinical/interoperability.md section 6 with its verification tag
there; the ones the specification marks UNVERIFIED are marked so here too. Where no standard code is
known (goserelin, u-NTX/Cr, TBS, per-vertebra values, menopausal status) bonecast's own code systems
are used; their base URL is a placeholder to be replaced by one the project controls
(docs/clinical/interoperability.md section 6.5 uses ``example.org`` placeholders the same way).
Exports always carry bonecast's own coding next to the standard one, so a round trip never depends
on a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

BONECAST = "https://example.org/fhir/bonecast"
"""Base of bonecast's own code systems and extensions (placeholder; see the module docstring)."""
MRN_SYSTEM = f"{BONECAST}/mrn"
"""Default ``Patient.identifier.system`` of the registry's medical record numbers."""
DRUG_SYSTEM = f"{BONECAST}/CodeSystem/drug"
LAB_SYSTEM = f"{BONECAST}/CodeSystem/lab"
DXA_SYSTEM = f"{BONECAST}/CodeSystem/dxa"
ROUTE_SYSTEM = f"{BONECAST}/CodeSystem/route"
EXTENSION = f"{BONECAST}/StructureDefinition"

MEASURES: tuple[str, ...] = ("bmd_g_cm2", "t_score", "z_score")
"""What a DXA site reports, by the field names of :class:`~bonecast.registry.SiteValues`."""

MEASURE_UNITS: dict[str, str] = {
    "bmd_g_cm2": "g/cm2",
    "t_score": "{T-score}",
    "z_score": "{Z-score}",
}
"""UCUM codes per measure (docs/clinical/interoperability.md section 6.1; score annotations are
compared case-insensitively)."""

DXA_LOINC: dict[tuple[str, str], str] = {
    ("lumbar_spine", "bmd_g_cm2"): "24966-4",
    ("lumbar_spine", "t_score"): "38267-1",
    ("lumbar_spine", "z_score"): "85394-5",
    ("total_hip", "bmd_g_cm2"): "38261-4",
    ("total_hip", "t_score"): "38264-8",
    ("total_hip", "z_score"): "80933-5",
}
"""LOINC of each (site, measure) written on export (docs/clinical/interoperability.md section 6.1
[V]; LOINC pages: 24966-4 "DXA Lumbar spine [Mass/Area] Bone density", 38267-1 "DXA Lumbar spine
[T-score] Bone density", 38264-8 "DXA Hip [T-score] Bone density", system Lower extremity>Hip).

The femoral neck has no LOINC term of its own that could be found: LOINC's DXA terms name the
"Femur" (24701-5 "Femur DXA Bone density", 38263-0 "DXA Femur [T-score] Bone density", system
Lower extremity>Femur; 80934-3 its Z-score), which an EHR cannot tell from the total hip. So the
femoral neck is exported with bonecast's own DXA code and the SNOMED CT body site
:data:`FEMORAL_NECK_SNOMED`, never under the generic Femur codes (checked 2026-12-07 on
findacode.com's LOINC pages for 38263-0 and 38267-1 and HL7's Observation-example-bmd; a
femoral-neck LOINC term, if LOINC adds one, belongs here)."""

LEGACY_FEMUR_LOINC: dict[tuple[str, str], str] = {
    ("femoral_neck", "bmd_g_cm2"): "24701-5",
    ("femoral_neck", "t_score"): "38263-0",
    ("femoral_neck", "z_score"): "80934-3",
}
"""The generic "DXA Femur" LOINC terms, which bonecast exported for the femoral neck before
2026-12: read on import as the femoral neck (unless the body site says total hip), no longer
written."""

FEMORAL_NECK_SNOMED = "29627003"
"""SNOMED CT 29627003 |Structure of neck of femur (body structure)|: ``Observation.bodySite``
of femoral-neck results."""
TOTAL_HIP_SNOMED = "24136001"
"""SNOMED CT 24136001 |Hip joint structure (body structure)|: ``Observation.bodySite`` of
total-hip results."""
BODY_SITE_SNOMED: dict[str, str] = {
    "femoral_neck": FEMORAL_NECK_SNOMED,
    "total_hip": TOTAL_HIP_SNOMED,
}
"""SNOMED CT body site written per DXA site (the spine's LOINC terms name it already)."""

DXA_LOINC_SIDED: dict[str, tuple[str, str]] = {
    "46278-8": ("total_hip", "bmd_g_cm2"),
    "46279-6": ("total_hip", "bmd_g_cm2"),
    "80946-7": ("total_hip", "t_score"),
    "80945-9": ("total_hip", "t_score"),
    "80938-4": ("total_hip", "z_score"),
    "80937-6": ("total_hip", "z_score"),
    "80954-1": ("femoral_neck", "bmd_g_cm2"),
    "80953-3": ("femoral_neck", "bmd_g_cm2"),
    "80948-3": ("femoral_neck", "t_score"),
    "80947-5": ("femoral_neck", "t_score"),
    "80940-0": ("femoral_neck", "z_score"),
    "80939-2": ("femoral_neck", "z_score"),
}
"""Left/right hip and femur codes (docs/clinical/interoperability.md section 6.1 [V]), read on
import; the side is not kept."""

DXA_BY_LOINC: dict[str, tuple[str, str]] = {
    **{code: key for key, code in DXA_LOINC.items()},
    **{code: key for key, code in LEGACY_FEMUR_LOINC.items()},
    **DXA_LOINC_SIDED,
}
"""Every LOINC read on import: the current, the legacy Femur and the left/right terms."""

DXA_PANEL_LOINC = "83311-1"
"""DXA Bone density quantitative measurement panel (docs/clinical/interoperability.md section 6.1
[V]): one per exported scan, carrying TBS and per-vertebra values as components with bonecast's DXA
codes."""


@dataclass(frozen=True)
class LabCode:
    """A LOINC for a lab marker, valid only for ``units`` when given (a mass vs molar term)."""

    loinc: str
    marker: str
    units: frozenset[str] | None = None
    verification: str = "V"


LAB_CODES: tuple[LabCode, ...] = (
    LabCode("41171-0", "ctx"),
    LabCode("77370-5", "p1np"),
    LabCode("17838-4", "balp", verification="V (property and units UNVERIFIED)"),
    LabCode("62292-8", "vitamin_d_25oh"),
    LabCode("1989-3", "vitamin_d_25oh", verification="V; legacy 25-OH D3, read only"),
    LabCode("17861-6", "calcium", frozenset({"mg/dL"})),
    LabCode("98979-8", "egfr", verification="V-2nd (CKD-EPI 2021)"),
)
"""Lab LOINC codes (docs/clinical/interoperability.md section 6.2). u-NTX/Cr has no verified LOINC:
bonecast's code only."""

LEGACY_LAB_LOINC = frozenset({"1989-3"})
"""Codes accepted on import but flagged in the report and never written."""

LAB_UCUM: dict[str, str] = {
    "mL/min/1.73m2": "mL/min/{1.73_m2}",
    "nmol BCE/mmol Cr": "nmol{BCE}/mmol{Cr}",
}
"""UCUM codes of lab units whose bonecast spelling is not already UCUM (the others are)."""

RXNORM_INGREDIENTS: dict[str, str] = {
    "anastrozole": "84857",
    "letrozole": "72965",
    "exemestane": "258494",
    "tamoxifen": "10324",
    "denosumab": "993449",
    "zoledronic_acid": "77655",
    "alendronate": "46041",  # UNVERIFIED (docs/clinical/interoperability.md section 6.4)
    "risedronate": "73056",  # UNVERIFIED
    "ibandronate": "115264",  # UNVERIFIED
}
"""RxNorm ingredient RxCUIs (TTY=IN) per catalogue drug
(docs/clinical/interoperability.md section 6.4); goserelin has none."""

SNOMED_SUBSTANCES: dict[str, str] = {
    "386910003": "anastrozole",
    "386911004": "letrozole",
    "387017005": "exemestane",
    "373345002": "tamoxifen",
    "446321003": "denosumab",
    "395926009": "zoledronic_acid",
}
"""SNOMED CT substance concepts read on import (docs/clinical/interoperability.md section 6.3
[V])."""

BODY_WEIGHT_LOINC = "29463-7"
"""Body weight (kg); a LOINC vital-sign code not listed in docs/clinical/index.md (UNVERIFIED
there)."""
BODY_HEIGHT_LOINC = "8302-2"
"""Body height (cm); a LOINC vital-sign code not listed in docs/clinical/index.md (UNVERIFIED
there)."""

SCANNER_MAKERS: dict[str, str] = {"hologic": "Hologic", "lunar": "GE Lunar", "norland": "Norland"}
"""``Device.manufacturer`` written per scanner maker; on import matched by the words below."""
SCANNER_WORDS: dict[str, str] = {
    "hologic": "hologic",
    "lunar": "lunar",
    "ge": "lunar",
    "norland": "norland",
}
