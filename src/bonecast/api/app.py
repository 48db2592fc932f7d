"""The FastAPI application: health, the REST API (``/api/v1``), CDS Hooks and the web pages.

``create_app(database_url)`` opens the registry and migrates it to the latest schema when the
application starts. Registry and assessment errors become JSON answers: 404 for an unknown
record, 409 for a duplicate, 422 for invalid input naming each field (nothing is written), 429
after too many failed sign-ins; every 4xx body is ``{"detail": message or [problems]}``.
Security headers are on every response (:mod:`bonecast.api.security_headers`).
Error bodies may quote patient data back to the caller; nothing here logs them. Every response
carries a ``Server-Timing`` header (:mod:`bonecast.api.server_timing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from bonecast import DISCLAIMER, __version__
from bonecast.api import cds_hooks, rest
from bonecast.api.auth import RegistryDep, TokenCache
from bonecast.api.cds_settings import CdsCorsMiddleware, CdsSettings
from bonecast.api.security_headers import SecurityHeadersMiddleware
from bonecast.api.server_timing import ServerTimingMiddleware
from bonecast.clinical import PatientError
from bonecast.registry import (
    ConflictError,
    FieldProblem,
    InvalidInputError,
    NotFoundError,
    Registry,
    upgrade,
)
from bonecast.services import prepare_forecasts, stop_forecasts
from bonecast.web.security import Signer, secret_key


class Health(BaseModel):
    """The service's state and the registry schema's migration revision."""

    status: str
    schema_revision: str | None
    version: str


def _problems(problems: list[FieldProblem], kind: str) -> list[dict[str, object]]:
    """Problems in FastAPI's validation-error shape (``loc`` is the dotted field, split)."""
    return [
        {"loc": p.field.split(".") if p.field else [], "msg": p.message, "type": kind}
        for p in problems
    ]


def _json(code: int, detail: object) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


def _add_error_handlers(app: FastAPI) -> None:
    async def not_found(_request: Request, error: Exception) -> JSONResponse:
        return _json(status.HTTP_404_NOT_FOUND, str(error))

    async def conflict(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ConflictError)
        return _json(status.HTTP_409_CONFLICT, _problems([error.problem()], "conflict"))

    async def invalid(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, InvalidInputError)
        return _json(
            status.HTTP_422_UNPROCESSABLE_CONTENT, _problems(error.problems, "value_error")
        )

    async def not_assessable(_request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, PatientError)
        detail = [{"loc": [], "msg": line, "type": "not_assessable"} for line in error.problems]
        return _json(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(InvalidInputError, invalid)
    app.add_exception_handler(PatientError, not_assessable)


def create_app(
    database_url: str,
    *,
    forecast_years: int = 5,
    cds: CdsSettings | None = None,
    trial_scheduler: str | None = None,
    forecast_processes: int = 0,
) -> FastAPI:
    """The bonecast web application on the registry at ``database_url``.

    ``cds``: the CDS Hooks settings (default: from the ``BONECAST_CDS_*`` environment).

    ``forecast_years`` is the horizon of the forecast on the web pages and reports (0: none);
    with one, the compiled forecast engine is loaded in the background at start-up and a write
    to a chart computes the patient's assessment ahead (:func:`bonecast.services.warm_assessment`).
    ``trial_scheduler``: the address of a Dask scheduler that runs the trial page's jobs.
    ``forecast_processes``: forecast worker processes started with the application
    (:mod:`bonecast.services.forecast_pool`), so that concurrent forecasts run side by side;
    0 computes them one at a time in this process.
    """
    registry = Registry(database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade, registry.engine)
        app.state.web_signer = Signer(await run_in_threadpool(secret_key, registry))
        await run_in_threadpool(app.state.trial_jobs.store.fail_interrupted)
        if forecast_years:
            prepare_forecasts(forecast_processes)
        yield
        stop_forecasts()
        app.state.trial_jobs.close()
        registry.dispose()

    app = FastAPI(
        title="bonecast",
        version=__version__,
        description=f"Bone health on aromatase inhibitors: REST API and CDS Hooks. {DISCLAIMER}",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN, which the CSP forbids
        redoc_url=None,
    )
    app.state.registry = registry
    app.state.token_cache = TokenCache()
    app.state.forecast_years = forecast_years
    app.state.cds_settings = cds or CdsSettings.from_env()
    app.add_middleware(ServerTimingMiddleware)
    app.add_middleware(CdsCorsMiddleware, settings=app.state.cds_settings)
    app.add_middleware(SecurityHeadersMiddleware)
    _add_error_handlers(app)

    @app.get("/health", tags=["health"], response_model=Health)
    def health(registry: RegistryDep) -> Health | JSONResponse:
        """Whether the service and its database answer (no login needed)."""
        try:
            revision = registry.schema_revision()
        except SQLAlchemyError:
            return _json(status.HTTP_503_SERVICE_UNAVAILABLE, "the database does not answer")
        return Health(status="ok", schema_revision=revision, version=__version__)

    app.include_router(rest.router)
    app.include_router(cds_hooks.router)
    # the pages use the API's auth dependencies, so they are imported here, not at module level
    from bonecast.web import mount_trials, mount_web

    mount_web(app, forecast_years)
    mount_trials(app, trial_scheduler)
    return app
