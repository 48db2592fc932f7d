"""Clinical decision support for bone health on aromatase inhibitors (docs/clinical/index.md).

Scores (T/Z, standardised BMD, WHO category), real change (precision, LSC), guideline rule sets
with a rule trace, fracture risk (QFracture-2012, FRAX adjustments, AI relative risk), bone
turnover markers, the monitoring schedule, and :func:`assess`, which puts them together into one
:class:`Assessment`. Decision support for professionals, not a medical device.
"""

from bonecast.clinical.assessment import Assessment, Recommendation, assess
from bonecast.clinical.fracture import (
    FractureEstimate,
    FractureRisk,
    QFractureInputs,
    ai_adjusted_pct,
    frax_discordance_factor,
    frax_glucocorticoid_pct,
    qfracture_cumulative_pct,
    qfracture_inputs,
    qfracture_risk_pct,
)
from bonecast.clinical.guidelines import (
    DEFAULT_RULE_SET,
    Facts,
    GuidelineResult,
    RuleSet,
    evaluate,
    load_rule_set,
    rule_set_names,
)
from bonecast.clinical.markers import (
    MarkerResult,
    MarkerSummary,
    evaluate_markers,
    reference_interval,
)
from bonecast.clinical.monitoring import NextDxa, months_to_detect
from bonecast.clinical.patient import Patient, PatientError, load_patient, parse_patient
from bonecast.clinical.precision import (
    Lsc,
    PrecisionError,
    SiteChange,
    SitePrecision,
    load_precision_study,
    lsc_table,
    site_precision,
)
from bonecast.clinical.render import render_text
from bonecast.clinical.scores import (
    SiteScore,
    WhoCategory,
    convert_bmd_g_cm2,
    select_vertebrae,
    standardised_bmd_mg_cm2,
    t_score,
    who_category,
)

__all__ = [
    "DEFAULT_RULE_SET",
    "Assessment",
    "Facts",
    "FractureEstimate",
    "FractureRisk",
    "GuidelineResult",
    "Lsc",
    "MarkerResult",
    "MarkerSummary",
    "NextDxa",
    "Patient",
    "PatientError",
    "PrecisionError",
    "QFractureInputs",
    "Recommendation",
    "RuleSet",
    "SiteChange",
    "SitePrecision",
    "SiteScore",
    "WhoCategory",
    "ai_adjusted_pct",
    "assess",
    "convert_bmd_g_cm2",
    "evaluate",
    "evaluate_markers",
    "frax_discordance_factor",
    "frax_glucocorticoid_pct",
    "load_patient",
    "load_precision_study",
    "load_rule_set",
    "lsc_table",
    "months_to_detect",
    "parse_patient",
    "qfracture_cumulative_pct",
    "qfracture_inputs",
    "qfracture_risk_pct",
    "reference_interval",
    "render_text",
    "rule_set_names",
    "select_vertebrae",
    "site_precision",
    "standardised_bmd_mg_cm2",
    "t_score",
    "who_category",
]
