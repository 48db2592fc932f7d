"""Virtual-trial jobs of the web page, kept in the registry so every worker process sees them.

The process that runs a job writes its state, progress and results (plot PNG and result CSV)
to the ``trial_jobs`` table; any process reads them. A job's ``runner`` names the process that
runs it (host, process id and a random token of that process's start): when a server starts,
jobs left queued or running by a process of this host that is gone are marked failed, and a
server that stops marks its own unfinished jobs failed, so no job shows "running" forever.
Jobs hold trial specs, never patient data, and are not audited.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from bonecast.registry.models import TrialJob, TrialState

KEEP = 50
"""Finished jobs kept; older ones are removed when a new job is submitted."""
INTERRUPTED = "interrupted: the server process running it stopped"
THIS_PROCESS = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
"""The runner name of this process."""


@dataclass(frozen=True)
class TrialJobRecord:
    """A trial job as stored (without its results)."""

    id: str
    created_at: datetime
    started_by: str
    spec: str
    state: TrialState
    runner: str
    patient_days_total: int
    patient_days_done: int
    error: str | None


_COLUMNS = [
    getattr(TrialJob, name)
    for name in TrialJobRecord.__dataclass_fields__  # the record's fields, in order
]


def _alive(runner: str) -> bool:
    """Whether ``runner`` may still be running: another host's process, or a live one here."""
    host, _, rest = runner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if runner == THIS_PROCESS:
        return True
    if int(pid) == os.getpid():
        return False  # our pid, another start: a restarted container
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TrialJobStore:
    """The trial jobs of a registry (its engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submit(self, job_id: str, spec: str, started_by: str, patient_days: int) -> None:
        """Record a new queued job run by this process; forget old finished ones."""
        with self.engine.begin() as connection:
            connection.execute(
                insert(TrialJob),
                {
                    "id": job_id,
                    "started_by": started_by,
                    "spec": spec,
                    "state": "queued",
                    "runner": THIS_PROCESS,
                    "patient_days_total": patient_days,
                    "patient_days_done": 0,
                },
            )
            kept = (
                select(TrialJob.id)
                .order_by(TrialJob.created_at.desc())
                .limit(KEEP)
                .scalar_subquery()
            )
            connection.execute(
                delete(TrialJob).where(
                    TrialJob.state.in_(("done", "failed")), TrialJob.id.not_in(kept)
                )
            )

    def _set(self, job_id: str, state: TrialState, **values: object) -> None:
        """Update an unfinished job (a job marked failed or done stays so)."""
        unfinished = TrialJob.state.in_(("queued", "running"))
        with self.engine.begin() as connection:
            connection.execute(
                update(TrialJob)
                .where(TrialJob.id == job_id, unfinished)
                .values(state=state, **values)
            )

    def running(self, job_id: str) -> None:
        """The job has started."""
        self._set(job_id, "running")

    def progress(self, job_id: str, patient_days_done: int) -> None:
        """Patient-days simulated so far."""
        self._set(job_id, "running", patient_days_done=patient_days_done)

    def done(self, job_id: str, plot_png: bytes, results_csv: str) -> None:
        """The job finished with these results."""
        self._set(job_id, "done", plot_png=plot_png, results_csv=results_csv)

    def failed(self, job_id: str, error: str) -> None:
        """The job failed with this message."""
        self._set(job_id, "failed", error=error)

    def get(self, job_id: str) -> TrialJobRecord | None:
        """The job ``job_id`` (``None`` when unknown or forgotten)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(TrialJob.id == job_id)).first()
        return TrialJobRecord(*row) if row else None

    def newest_first(self, limit: int = KEEP) -> list[TrialJobRecord]:
        """The most recent jobs, newest first."""
        query = select(*_COLUMNS).order_by(TrialJob.created_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [TrialJobRecord(*row) for row in connection.execute(query)]

    def count(self) -> int:
        """How many jobs are kept."""
        with self.engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(TrialJob)) or 0)

    def results(self, job_id: str) -> tuple[bytes, str] | None:
        """The plot (PNG) and result CSV of a finished job."""
        query = select(TrialJob.plot_png, TrialJob.results_csv).where(
            TrialJob.id == job_id, TrialJob.state == "done"
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return (row[0], row[1]) if row and row[0] is not None and row[1] is not None else None

    def fail_interrupted(self, *, ours_too: bool = False) -> int:
        """Mark failed the unfinished jobs whose process is gone (with ``ours_too``, also this
        process's: it is stopping); returns how many."""
        query = select(TrialJob.id, TrialJob.runner).where(
            TrialJob.state.in_(("queued", "running"))
        )
        with self.engine.begin() as connection:
            gone = [
                job_id
                for job_id, runner in connection.execute(query)
                if not _alive(runner) or (ours_too and runner == THIS_PROCESS)
            ]
            if gone:
                connection.execute(
                    update(TrialJob)
                    .where(TrialJob.id.in_(gone), TrialJob.state.in_(("queued", "running")))
                    .values(state="failed", error=INTERRUPTED)
                )
        return len(gone)
