"""Routes of the web pages; see :mod:`bonecast.web`.

Unauthenticated requests are sent to the sign-in page; every POST needs the CSRF token of its
form; viewers see no write forms and get 403 on a write. Nothing here logs patient data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from bonecast import DISCLAIMER, __version__, labels
from bonecast.api import throttle
from bonecast.api.auth import WRITER_ROLES, RegistryDep
from bonecast.api.params import RecordId
from bonecast.clinical.patient import lab_tests
from bonecast.registry import (
    ConflictError,
    FieldProblem,
    InvalidInputError,
    LabIn,
    ScanIn,
    TreatmentIn,
    UserRecord,
    parse,
)
from bonecast.reports.patient_report import (
    Audience,
    chart_url,
    render_report_html,
    render_report_pdf,
)
from bonecast.reports.patient_view import CHARTS, chart_svg, view
from bonecast.services.assessments import (
    WorklistRow,
    current_assessment,
    warm_assessment,
    worklist,
)
from bonecast.simulation import DRUGS, SITES, Route
from bonecast.web.security import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Signer,
    new_csrf_token,
    same_token,
)

_templates = Jinja2Templates(
    env=Environment(
        loader=ChoiceLoader(
            [
                PackageLoader("bonecast.web", "templates"),
                PackageLoader("bonecast.reports", "templates"),
            ]
        ),
        autoescape=select_autoescape(),
    )
)
_templates.env.globals.update(
    disclaimer=DISCLAIMER, version=__version__, labels=labels, chart_url=chart_url
)
_COOKIE_OPTIONS: dict[str, Any] = {"httponly": True, "samesite": "lax", "path": "/"}
_FORMS: dict[str, type[BaseModel]] = {"scans": ScanIn, "labs": LabIn, "treatments": TreatmentIn}
_FIELD_NAMES = frozenset(
    [
        "scan_date",
        "scanner",
        "scanner_serial",
        "facility",
        *(f"sites.{site}.{part}" for site in SITES for part in ("bmd_g_cm2", "t_score")),
        "sample_date",
        "marker",
        "value",
        "unit",
        "drug",
        "dose_mg",
        "route",
        "start_date",
        "stop_date",
    ]
)
"""The inputs of the patient page's forms (an error on one of them links to it)."""
_SORTS: dict[str, Callable[[WorklistRow], Any]] = {
    "name": lambda row: ((row.family_name or "").lower(), (row.given_name or "").lower()),
    "due": lambda row: (row.next_dxa_due is None, row.next_dxa_due),
    "category": lambda row: str(row.who_category.value if row.who_category else "~"),
}


class SignInRequiredError(Exception):
    """Raised by page dependencies when nobody is signed in (becomes a redirect)."""


@dataclass(frozen=True)
class Visitor:
    """Who makes the request, and the CSRF token their forms must carry."""

    user: UserRecord
    csrf_token: str

    @property
    def can_write(self) -> bool:
        """Whether the user may add records (admin or clinician)."""
        return self.user.role in WRITER_ROLES


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.web_signer
    return signer


def _csrf(request: Request) -> str | None:
    return _signer(request).unsign(request.cookies.get(CSRF_COOKIE))


async def check_csrf(request: Request) -> None:
    """403 unless a POST's form carries the token of the CSRF cookie."""
    if request.method == "POST":
        form = await request.form()
        given = form.get(CSRF_FIELD)
        if not same_token(_csrf(request), given if isinstance(given, str) else None):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


def visitor(request: Request, registry: RegistryDep) -> Visitor:
    """The signed-in user; :class:`SignInRequiredError` otherwise."""
    user_id = _signer(request).session_user_id(request.cookies.get(SESSION_COOKIE))
    token = _csrf(request)
    if user_id is None or token is None:
        raise SignInRequiredError
    with registry.session() as session:
        users = [u for u in session.list_users() if u.id == user_id and u.active]
    if not users:
        raise SignInRequiredError
    return Visitor(users[0], token)


VisitorDep = Annotated[Visitor, Depends(visitor)]


def writer(who: VisitorDep) -> Visitor:
    """The visitor, if allowed to write; 403 otherwise."""
    if not who.can_write:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {who.user.role} role may only read")
    return who


router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


def render_page(request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered with ``context`` (and the disclaimer and version)."""
    return _templates.TemplateResponse(request, name, context, status_code=code)


@router.get("/")
def home() -> RedirectResponse:
    """The worklist is the start page."""
    return RedirectResponse("/worklist", status.HTTP_303_SEE_OTHER)


@router.get("/signin")
def signin_page(request: Request) -> HTMLResponse:
    """The sign-in form (sets a fresh CSRF cookie when there is none)."""
    token = _csrf(request)
    fresh = token or new_csrf_token()
    response = render_page(request, "signin.html", csrf_token=fresh, error=None)
    if token is None:
        response.set_cookie(CSRF_COOKIE, _signer(request).sign(fresh), **_COOKIE_OPTIONS)
    return response


def _signin_refused(
    request: Request, code: int, error: str, retry_after: int | None = None
) -> Response:
    response = render_page(request, "signin.html", code, csrf_token=_csrf(request), error=error)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


@router.post("/signin")
def signin(
    request: Request,
    registry: RegistryDep,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    """Sign in: a session cookie and a new CSRF token, or the form again with an error.

    Throttled per username and client address (:mod:`bonecast.api.throttle`): 429 while locked.
    """
    keys = throttle.keys_of(request, username)
    try:
        throttle.refuse_if_locked(registry, keys)
        with registry.session() as session:
            user = session.authenticate(username.strip(), password)
        if user is None and (locked := throttle.count_failure(registry, keys)) is not None:
            raise throttle.TooManyFailuresError(locked)
    except throttle.TooManyFailuresError as error:
        message = f"Too many failed sign-ins. {str(error.detail).capitalize()}."
        return _signin_refused(request, error.status_code, message, error.retry_after)
    if user is None:
        return _signin_refused(
            request, status.HTTP_401_UNAUTHORIZED, "Unknown username or wrong password."
        )
    response = RedirectResponse("/worklist", status.HTTP_303_SEE_OTHER)
    signer = _signer(request)
    response.set_cookie(SESSION_COOKIE, signer.session_value(user.id), **_COOKIE_OPTIONS)
    response.set_cookie(CSRF_COOKIE, signer.sign(new_csrf_token()), **_COOKIE_OPTIONS)
    return response


@router.post("/signout")
def signout(_who: VisitorDep) -> RedirectResponse:
    """Sign out: the session cookie is removed."""
    response = RedirectResponse("/signin", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _filtered(rows: list[WorklistRow], q: str, show: str, sort: str) -> list[WorklistRow]:
    needle = q.strip().lower()
    rows = [
        row
        for row in rows
        if needle in f"{row.mrn} {row.family_name or ''} {row.given_name or ''}".lower()
        and (show != "overdue" or row.overdue)
        and (show != "on_ai" or row.on_aromatase_inhibitor)
    ]
    return sorted(rows, key=_SORTS.get(sort, _SORTS["name"]))


@router.get("/worklist")
def worklist_page(
    request: Request,
    registry: RegistryDep,
    who: VisitorDep,
    q: str = "",
    show: str = "all",
    sort: str = "name",
) -> HTMLResponse:
    """Every patient with treatment, WHO category, recommendation and next DXA (searchable)."""
    rows = _filtered(worklist(registry), q, show, sort)
    partial = request.headers.get("HX-Request") == "true"
    name = "_worklist_rows.html" if partial else "worklist.html"
    return render_page(request, name, who=who, rows=rows, q=q, show=show, sort=sort)


def _lab_units() -> list[str]:
    return sorted({unit for test in lab_tests().values() for unit in test["units"]})


def _patient_page(
    request: Request,
    who: Visitor,
    patient_id: int,
    code: int = 200,
    form: str | None = None,
    values: dict[str, str] | None = None,
    problems: list[FieldProblem] | None = None,
) -> HTMLResponse:
    registry = request.app.state.registry
    chart, assessment = current_assessment(
        registry, patient_id, forecast_years=request.app.state.web_forecast_years
    )
    context = view(chart, assessment)
    return render_page(
        request,
        "patient.html",
        code,
        who=who,
        form=form,
        values=values or {},
        errors={p.field: p.message for p in problems or []},
        field_names=_FIELD_NAMES,
        sites=SITES,
        lab_options=[(code, labels.marker(code)) for code in lab_tests()],
        unit_options=[(unit, unit) for unit in _lab_units()],
        drug_options=[(name, labels.drug(name)) for name in DRUGS],
        route_options=[(route.value, labels.ROUTES[route]) for route in Route],
        **context,
    )


@router.get("/patients/{patient_id}")
def patient_page(request: Request, who: VisitorDep, patient_id: RecordId) -> HTMLResponse:
    """One patient: BMD chart, forecast, recommendation with trace, fracture risk, markers."""
    return _patient_page(request, who, patient_id)


def _nested(values: dict[str, str]) -> dict[str, Any]:
    """Dotted form fields (``sites.total_hip.bmd_g_cm2``) as nested data; blanks left out."""
    data: dict[str, Any] = {}
    for key, value in values.items():
        if key == CSRF_FIELD or not value.strip():
            continue
        *parents, leaf = key.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value.strip()
    return data


@router.post("/patients/{patient_id}/{kind}")
async def add_record(
    request: Request, who: Annotated[Visitor, Depends(writer)], patient_id: RecordId, kind: str
) -> Response:
    """Add a scan, lab or treatment; on error the form again, naming each field (no write)."""
    model = _FORMS.get(kind)
    if model is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown record kind")
    values = {key: value for key, value in (await request.form()).items() if isinstance(value, str)}
    registry = request.app.state.registry
    try:
        record = parse(model, _nested(values))
        with registry.session(actor=who.user.username) as session:
            getattr(session, f"add_{kind[:-1]}")(patient_id, record)
    except InvalidInputError as error:
        problems = error.problems
    except ConflictError as error:
        problems = [error.problem()]
    else:
        warm_assessment(registry, patient_id, forecast_years=request.app.state.web_forecast_years)
        return RedirectResponse(f"/patients/{patient_id}", status.HTTP_303_SEE_OTHER)
    # the page's forecast is CPU work: off the event loop
    return await run_in_threadpool(
        _patient_page,
        request,
        who,
        patient_id,
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        form=kind,
        values=values,
        problems=problems,
    )


def _report(request: Request, patient_id: int, audience: Audience, standalone: bool) -> str:
    chart, assessment = current_assessment(
        request.app.state.registry,
        patient_id,
        forecast_years=request.app.state.web_forecast_years,
    )
    return render_report_html(chart, assessment, audience, standalone=standalone)


def _pdf(request: Request, patient_id: int, audience: Audience, name: str) -> Response:
    pdf = render_report_pdf(_report(request, patient_id, audience, standalone=True))
    headers = {"Content-Disposition": f'inline; filename="bonecast-{name}-{patient_id}.pdf"'}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get("/patients/{patient_id}/report")
def report_html(request: Request, _who: VisitorDep, patient_id: RecordId) -> HTMLResponse:
    """The clinician's report as HTML."""
    return HTMLResponse(_report(request, patient_id, "clinician", standalone=False))


@router.get("/patients/{patient_id}/report.pdf")
def report_pdf(request: Request, _who: VisitorDep, patient_id: RecordId) -> Response:
    """The clinician's report as PDF."""
    return _pdf(request, patient_id, "clinician", "report")


@router.get("/patients/{patient_id}/summary")
def summary_html(request: Request, _who: VisitorDep, patient_id: RecordId) -> HTMLResponse:
    """The plain-language summary for the patient, as HTML."""
    return HTMLResponse(_report(request, patient_id, "patient", standalone=False))


@router.get("/patients/{patient_id}/summary.pdf")
def summary_pdf(request: Request, _who: VisitorDep, patient_id: RecordId) -> Response:
    """The plain-language summary for the patient, as PDF."""
    return _pdf(request, patient_id, "patient", "summary")


@router.get("/patients/{patient_id}/charts/{name}.svg")
def chart_image(request: Request, _who: VisitorDep, patient_id: RecordId, name: str) -> Response:
    """One chart of the patient as an SVG image (an image, so no inline style on the page)."""
    if name not in CHARTS:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"unknown chart; accepted: {', '.join(CHARTS)}"
        )
    chart, assessment = current_assessment(
        request.app.state.registry,
        patient_id,
        forecast_years=request.app.state.web_forecast_years,
    )
    svg = chart_svg(name, chart, assessment)
    if svg is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no marker results to chart")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    """Browsers ask for /favicon.ico: the SVG icon of the static folder."""
    return RedirectResponse("/static/favicon.svg", status.HTTP_301_MOVED_PERMANENTLY)


def mount_web(app: FastAPI, forecast_years: int = 5) -> None:
    """Add the pages, their static files and the sign-in redirect to ``app``."""

    async def to_signin(_request: Request, _error: Exception) -> RedirectResponse:
        return RedirectResponse("/signin", status.HTTP_303_SEE_OTHER)

    app.state.web_forecast_years = forecast_years
    app.add_exception_handler(SignInRequiredError, to_signin)
    static = StaticFiles(packages=[("bonecast.web", "static"), ("bonecast.reports", "static")])
    app.mount("/static", static, name="static")
    app.include_router(router)
