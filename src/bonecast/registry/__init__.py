"""The patient registry: database, migrations, repository, CSV and FHIR import/export.

Knows nothing of the web: the API and web pages call it through the service layer. Open a
:class:`Registry` on a database URL (``sqlite:///bonecast.db`` or
``postgresql+psycopg://user@host/db``) after :func:`upgrade`, and work in
``with registry.session(actor=...) as session:`` blocks (one transaction each, every write
audited). Imports (:func:`import_csv`, :func:`import_bundle`) run in a transaction of their own
and return an :class:`ImportReport`; :func:`export_patient` gives a FHIR R4 Bundle. Not a
medical device.
"""

from bonecast.registry.audit import MissingActorError
from bonecast.registry.csv_io import csv_columns, import_csv, import_csv_file
from bonecast.registry.database import (
    alembic_config,
    create_engine,
    current_revision,
    downgrade,
    upgrade,
)
from bonecast.registry.errors import (
    ConflictError,
    FieldProblem,
    InvalidInputError,
    NotFoundError,
    RegistryError,
)
from bonecast.registry.fhir import export_patient, import_bundle
from bonecast.registry.importing import ImportReport, ItemReport
from bonecast.registry.repository import Registry, RegistrySession
from bonecast.registry.schemas import (
    VERTEBRAE,
    AssessmentRecord,
    AuditRecord,
    LabIn,
    LabRecord,
    PasswordIn,
    PatientChart,
    PatientIn,
    PatientRecord,
    PrecisionStudyIn,
    PrecisionStudyRecord,
    RiskFactorsIn,
    RiskFactorsRecord,
    ScanIn,
    ScanRecord,
    SitePrecisionIn,
    SiteValues,
    TokenIn,
    TokenRecord,
    TreatmentIn,
    TreatmentRecord,
    UserIn,
    UserRecord,
    VertebraValues,
    parse,
)

__all__ = [
    "VERTEBRAE",
    "AssessmentRecord",
    "AuditRecord",
    "ConflictError",
    "FieldProblem",
    "ImportReport",
    "InvalidInputError",
    "ItemReport",
    "LabIn",
    "LabRecord",
    "MissingActorError",
    "NotFoundError",
    "PasswordIn",
    "PatientChart",
    "PatientIn",
    "PatientRecord",
    "PrecisionStudyIn",
    "PrecisionStudyRecord",
    "Registry",
    "RegistryError",
    "RegistrySession",
    "RiskFactorsIn",
    "RiskFactorsRecord",
    "ScanIn",
    "ScanRecord",
    "SitePrecisionIn",
    "SiteValues",
    "TokenIn",
    "TokenRecord",
    "TreatmentIn",
    "TreatmentRecord",
    "UserIn",
    "UserRecord",
    "VertebraValues",
    "alembic_config",
    "create_engine",
    "csv_columns",
    "current_revision",
    "downgrade",
    "export_patient",
    "import_bundle",
    "import_csv",
    "import_csv_file",
    "parse",
    "upgrade",
]
