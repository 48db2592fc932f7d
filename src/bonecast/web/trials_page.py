"""The virtual-trial page for researchers: edit or upload a spec, run it, see the plot and CSV.

Jobs are kept in this process's memory (the last :data:`MAX_JOBS`, run :data:`WORKERS` at a
time in a thread pool): they are lost when the server restarts and are not shared between
worker processes, which is fine for a single clinic server. Every signed-in user sees the
jobs; admins and clinicians may start one, viewers get 403.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Literal

import yaml
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from bonecast.reports.plots import plot_trial
from bonecast.simulation import TrialSpec, TrialSpecError, parse_trial_spec, run_trial
from bonecast.web.pages import Visitor, VisitorDep, check_csrf, render_page, writer

MAX_N = 20_000
"""Largest population per arm the web page runs (the command line has no such limit)."""
MAX_JOBS = 50
"""Jobs kept in memory; the oldest finished ones are forgotten first."""
WORKERS = 2
"""Trials run at the same time; later ones wait in the queue."""
EXAMPLE_SPEC = files("bonecast.web").joinpath("static/example_trial.yaml").read_text("utf-8")

State = Literal["queued", "running", "done", "failed"]


@dataclass
class TrialJob:
    """One run of a trial spec and, once done, its plot (PNG) and result CSV."""

    id: str
    spec: TrialSpec
    started_by: str
    total: int
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: State = "queued"
    done: int = 0
    error: str | None = None
    png: bytes | None = None
    csv: str | None = None

    @property
    def percent(self) -> int:
        """Patient-days simulated, in percent of all (100 once done)."""
        if self.state == "done":
            return 100
        return min(99, 100 * self.done // max(1, self.total))

    def advance(self, patient_days: int) -> None:
        """Progress callback of :func:`run_trial`."""
        self.done += patient_days

    def run(self) -> None:
        """Run the trial, then draw the plot and write the CSV (in a worker thread)."""
        self.state = "running"
        try:
            result = run_trial(self.spec, progress=self.advance)
            with tempfile.TemporaryDirectory() as tmp:
                plot_trial(result, Path(tmp) / "plot.png")
                result.write_csv(Path(tmp) / "results.csv")
                self.png = (Path(tmp) / "plot.png").read_bytes()
                self.csv = (Path(tmp) / "results.csv").read_text("utf-8")
        except Exception as error:  # shown on the job's page rather than lost in the pool
            self.error = f"{type(error).__name__}: {error}"
            self.state = "failed"
        else:
            self.state = "done"


class TrialJobs:
    """The jobs of this process, newest last, and the pool that runs them."""

    def __init__(self) -> None:
        self.jobs: OrderedDict[str, TrialJob] = OrderedDict()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="trial")
        self._lock = threading.Lock()  # pages read the jobs while a POST adds one

    def submit(self, spec: TrialSpec, started_by: str) -> TrialJob:
        """Queue ``spec`` for running; forgets the oldest finished jobs beyond :data:`MAX_JOBS`."""
        n = spec.population.n if spec.population.variability else 1
        job = TrialJob(
            secrets.token_urlsafe(9), spec, started_by, len(spec.arms) * n * spec.horizon_days
        )
        with self._lock:
            self.jobs[job.id] = job
            finished = [j.id for j in self.jobs.values() if j.state in ("done", "failed")]
            for old in finished[: max(0, len(self.jobs) - MAX_JOBS)]:
                del self.jobs[old]
        self.pool.submit(job.run)
        return job

    def close(self) -> None:
        """Stop taking jobs and drop the queued ones (running ones finish in the background)."""
        self.pool.shutdown(wait=False, cancel_futures=True)

    def newest_first(self) -> list[TrialJob]:
        """The jobs kept, newest first."""
        with self._lock:
            return list(reversed(self.jobs.values()))

    def get(self, job_id: str) -> TrialJob:
        """The job ``job_id``; 404 when unknown (or forgotten)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown or expired trial job")
        return job


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
    job = jobs.submit(spec, who.user.username)
    return RedirectResponse(f"/trials/{job.id}", status.HTTP_303_SEE_OTHER)


@router.get("/trials/{job_id}")
def trial_job_page(request: Request, who: VisitorDep, jobs: JobsDep, job_id: str) -> HTMLResponse:
    """A job: its progress while it runs, then the plot and the CSV link (or the error)."""
    return render_page(request, "trial_job.html", who=who, job=jobs.get(job_id))


@router.get("/trials/{job_id}/progress")
def trial_progress(_who: VisitorDep, jobs: JobsDep, job_id: str) -> dict[str, object]:
    """The job's state and percent done (polled by the job page)."""
    job = jobs.get(job_id)
    return {"state": job.state, "percent": job.percent, "error": job.error}


def _finished(jobs: TrialJobs, job_id: str) -> TrialJob:
    job = jobs.get(job_id)
    if job.state != "done":
        raise HTTPException(status.HTTP_409_CONFLICT, f"the trial is {job.state}")
    return job


@router.get("/trials/{job_id}/plot.png")
def trial_plot(_who: VisitorDep, jobs: JobsDep, job_id: str) -> Response:
    """The plot of a finished job."""
    return Response(_finished(jobs, job_id).png, media_type="image/png")


@router.get("/trials/{job_id}/results.csv")
def trial_csv(_who: VisitorDep, jobs: JobsDep, job_id: str) -> Response:
    """The result CSV of a finished job (the contract's columns)."""
    headers = {"Content-Disposition": f'attachment; filename="trial-{job_id}.csv"'}
    return Response(_finished(jobs, job_id).csv, media_type="text/csv", headers=headers)


def mount_trials(app: FastAPI) -> None:
    """Add the trial pages and their in-memory job store to ``app`` (after :func:`mount_web`)."""
    app.state.trial_jobs = TrialJobs()
    app.include_router(router)
