"""The service layer: what the web pages, the REST API, CDS Hooks and the CLI do with the
registry and the clinical engine. Interfaces call services; services call the registry and
:mod:`bonecast.clinical`, never the reverse. Not a medical device."""

from bonecast.services.assessments import (
    WorklistRow,
    assess_patient,
    patient_input,
    prepare_forecasts,
    stop_forecasts,
    warm_assessment,
    worklist,
)
from bonecast.services.fhir_input import PrefetchError, patient_from_fhir

__all__ = [
    "PrefetchError",
    "WorklistRow",
    "assess_patient",
    "patient_from_fhir",
    "patient_input",
    "prepare_forecasts",
    "stop_forecasts",
    "warm_assessment",
    "worklist",
]
