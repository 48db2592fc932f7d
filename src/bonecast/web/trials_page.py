"""The virtual-trial page for researchers: edit or upload a spec, run it, see the plot and CSV.

Jobs are kept in the registry (:mod:`bonecast.registry.trial_jobs`): every worker process shows
them, and finished ones survive a restart; a job whose process stopped is shown as failed. The
process that receives a job runs it (:data:`WORKERS` at a time per process, in a thread pool),
on the Dask scheduler given to :func:`mount_trials` when there is one (``serve --scheduler``).
Every signed-in user sees the jobs; admins and clinicians may start one, viewers get 403.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from bonecast.registry.trial_jobs import INTERRUPTED, TrialJobRecord, TrialJobStore
from bonecast.reports.plots import plot_trial
from bonecast.simulation import TrialSpec, TrialSpecError, parse_trial_spec, run_trial
from bonecast.simulation.executors import Executor, dask_executor
from bonecast.web.pages import Visitor, VisitorDep, check_csrf, render_page, writer

MAX_N = 20_000
"""Largest population per arm the web page runs (the command line has no such limit)."""
WORKERS = 2
"""Trials run at the same time by one server process; later ones wait in the queue."""
PROGRESS_SECONDS = 0.5
"""Progress is written to the registry at most this often."""
EXAMPLE_SPEC = files("bonecast.web").joinpath("static/example_trial.yaml").read_text("utf-8")


@dataclass(frozen=True)
class TrialJob:
    """A job as the pages show it: the stored record and its spec."""

    record: TrialJobRecord

    @property
    def id(self) -> str:
        """The job's id (in its URL)."""
        return self.record.id

    @cached_property
    def spec(self) -> TrialSpec:
        """The trial spec the job runs."""
        return _spec(self.record.spec)

    @property
    def started_by(self) -> str:
        """Who started it."""
        return self.record.started_by

    @property
    def created(self) -> datetime:
        """When it was submitted (UTC)."""
        return self.record.created_at

    @property
    def state(self) -> str:
        """queued, running, done or failed."""
        return self.record.state

    @property
    def error(self) -> str | None:
        """Why it failed."""
        return self.record.error

    @property
    def percent(self) -> int:
        """Patient-days simulated, in percent of all (100 once done)."""
        if self.state == "done":
            return 100
        return min(
            99, 100 * self.record.patient_days_done // max(1, self.record.patient_days_total)
        )


class ServerStoppingError(Exception):
    """Raised in a running trial when the server stops (ends the run at its next progress)."""


class TrialJobs:
    """The registry's trial jobs, and this process's pool that runs the ones it receives."""

    def __init__(self, store: TrialJobStore, scheduler: str | None = None) -> None:
        self.store = store
        self.scheduler = scheduler
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="trial")
        self._stopping = threading.Event()

    def submit(self, spec_text: str, spec: TrialSpec, started_by: str) -> str:
        """Record ``spec`` as a queued job, run it in the background; returns the job's id."""
        n = spec.population.n if spec.population.variability else 1
        job_id = secrets.token_urlsafe(9)
        self.store.submit(job_id, spec_text, started_by, len(spec.arms) * n * spec.horizon_days)
        self.pool.submit(self._run, job_id, spec)
        return job_id

    def _run(self, job_id: str, spec: TrialSpec) -> None:
        """Run the trial, then store the plot and the CSV (in a worker thread)."""
        self.store.running(job_id)
        done, written = 0, time.monotonic()
        lock = threading.Lock()

        def advance(patient_days: int) -> None:
            nonlocal done, written
            if self._stopping.is_set():
                raise ServerStoppingError
            with lock:
                done += patient_days
                if time.monotonic() - written >= PROGRESS_SECONDS:
                    written = time.monotonic()
                    self.store.progress(job_id, done)

        try:
            executor: AbstractContextManager[Executor | None] = (
                dask_executor(scheduler=self.scheduler) if self.scheduler else nullcontext()
            )
            with executor as runner:
                result = run_trial(spec, progress=advance, executor=runner)
            with tempfile.TemporaryDirectory() as tmp:
                plot_trial(result, Path(tmp) / "plot.png")
                result.write_csv(Path(tmp) / "results.csv")
                png = (Path(tmp) / "plot.png").read_bytes()
                csv = (Path(tmp) / "results.csv").read_text("utf-8")
        except ServerStoppingError:
            self.store.failed(job_id, INTERRUPTED)
        except Exception as error:  # shown on the job's page rather than lost in the pool
            self.store.failed(job_id, f"{type(error).__name__}: {error}")
        else:
            self.store.done(job_id, png, csv)

    def close(self) -> None:
        """Stop taking jobs, end the running ones; this process's unfinished jobs are marked
        failed."""
        self._stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.store.fail_interrupted(ours_too=True)

    def newest_first(self) -> list[TrialJob]:
        """The jobs kept, newest first."""
        return [TrialJob(record) for record in self.store.newest_first()]

    def get(self, job_id: str) -> TrialJob:
        """The job ``job_id``; 404 when unknown (or forgotten)."""
        record = self.store.get(job_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown or expired trial job")
        return TrialJob(record)


def _jobs(request: Request) -> TrialJobs:
    jobs: TrialJobs = request.app.state.trial_jobs
    return jobs


JobsDep = Annotated[TrialJobs, Depends(_jobs)]
router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])


def _form(
    request: Request, who: Visitor, text: str, problems: list[str], code: int = 200
) -> HTMLResponse:
    return render_page(
        request,
        "trials.html",
        code,
        who=who,
        spec_text=text,
        problems=problems,
        jobs=_jobs(request).newest_first(),
        max_n=MAX_N,
    )


@router.get("/trials")
def trials_page(request: Request, who: VisitorDep) -> HTMLResponse:
    """The spec form (prefilled with an example) and the jobs of this server."""
    return _form(request, who, EXAMPLE_SPEC, [])


def _spec(text: str) -> TrialSpec:
    """The spec of a YAML/JSON text, within the web page's population limit."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise TrialSpecError("the form", [f"not valid YAML/JSON: {error}"]) from None
    spec = parse_trial_spec(data, "the form")
    if spec.population.n > MAX_N:
        raise TrialSpecError(
            "the form",
            [
                f"population.n: at most {MAX_N} patients per arm on the web page (given: "
                f"{spec.population.n}); run larger trials with 'bonecast trial run'"
            ],
        )
    return spec


@router.post("/trials")
async def start_trial(
    request: Request, who: Annotated[Visitor, Depends(writer)], jobs: JobsDep
) -> Response:
    """Validate the spec (an uploaded file wins over the text) and run it in the background."""
    form = await request.form()
    upload, text = form.get("file"), form.get("spec")
    text = text if isinstance(text, str) else ""
    if isinstance(upload, UploadFile) and upload.filename:
        text = (await upload.read()).decode("utf-8", errors="replace")
    try:
        spec = _spec(text)
    except TrialSpecError as error:
        return _form(request, who, text, error.problems, status.HTTP_422_UNPROCESSABLE_CONTENT)
    job_id = jobs.submit(text, spec, who.user.username)
    return RedirectResponse(f"/trials/{job_id}", status.HTTP_303_SEE_OTHER)


@router.get("/trials/{job_id}")
def trial_job_page(request: Request, who: VisitorDep, jobs: JobsDep, job_id: str) -> HTMLResponse:
    """A job: its progress while it runs, then the plot and the CSV link (or the error)."""
    return render_page(request, "trial_job.html", who=who, job=jobs.get(job_id))


@router.get("/trials/{job_id}/progress")
def trial_progress(_who: VisitorDep, jobs: JobsDep, job_id: str) -> dict[str, object]:
    """The job's state and percent done (polled by the job page)."""
    job = jobs.get(job_id)
    return {"state": job.state, "percent": job.percent, "error": job.error}


def _finished(jobs: TrialJobs, job_id: str) -> tuple[bytes, str]:
    job = jobs.get(job_id)
    results = jobs.store.results(job_id)
    if results is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"the trial is {job.state}")
    return results


@router.get("/trials/{job_id}/plot.png")
def trial_plot(_who: VisitorDep, jobs: JobsDep, job_id: str) -> Response:
    """The plot of a finished job."""
    return Response(_finished(jobs, job_id)[0], media_type="image/png")


@router.get("/trials/{job_id}/results.csv")
def trial_csv(_who: VisitorDep, jobs: JobsDep, job_id: str) -> Response:
    """The result CSV of a finished job (the contract's columns)."""
    headers = {"Content-Disposition": f'attachment; filename="trial-{job_id}.csv"'}
    return Response(_finished(jobs, job_id)[1], media_type="text/csv", headers=headers)


def mount_trials(app: FastAPI, scheduler: str | None = None) -> None:
    """Add the trial pages and the registry's job store to ``app`` (after :func:`mount_web`);
    with ``scheduler`` (a Dask scheduler's address) the trials run there."""
    app.state.trial_jobs = TrialJobs(TrialJobStore(app.state.registry.engine), scheduler)
    app.include_router(router)
