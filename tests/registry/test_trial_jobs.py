"""Trial jobs in the registry: what one process writes every process reads, on both back ends."""

from __future__ import annotations

from bonecast.registry import Registry
from bonecast.registry.trial_jobs import INTERRUPTED, KEEP, TrialJobStore


def test_a_job_moves_from_queued_to_done_with_its_results(registry: Registry) -> None:
    writer, reader = TrialJobStore(registry.engine), TrialJobStore(registry.engine)
    writer.submit("job1", "name: spec", "alice", 3 * 10**9)  # beyond 32 bits of patient-days
    assert [job.id for job in reader.newest_first()] == ["job1"]
    writer.running("job1")
    writer.progress("job1", 2 * 10**9)
    job = reader.get("job1")
    assert job is not None and job.state == "running" and job.patient_days_done == 2 * 10**9
    assert reader.results("job1") is None
    writer.done("job1", b"\x89PNG...", "arm,quantity\n")
    assert reader.results("job1") == (b"\x89PNG...", "arm,quantity\n")
    writer.failed("job1", "too late")  # a finished job stays as it finished
    finished = reader.get("job1")
    assert finished is not None and finished.state == "done" and finished.error is None


def test_a_stopping_process_fails_its_jobs_and_old_ones_are_forgotten(registry: Registry) -> None:
    store = TrialJobStore(registry.engine)
    store.submit("stopped", "name: spec", "alice", 100)
    assert store.fail_interrupted() == 0  # its process (this one) still runs
    assert store.fail_interrupted(ours_too=True) == 1
    job = store.get("stopped")
    assert job is not None and job.state == "failed" and job.error == INTERRUPTED
    store.done("stopped", b"png", "csv")
    assert store.results("stopped") is None
    for k in range(KEEP + 5):
        store.submit(f"j{k}", "name: spec", "alice", 100)
        store.failed(f"j{k}", "boom")
    assert store.count() == KEEP
    assert store.get("stopped") is None and store.get(f"j{KEEP + 4}") is not None
