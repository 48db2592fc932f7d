"""The virtual-trial page: the form, validation, a background run, the plot, the CSV and roles."""

from __future__ import annotations

import csv
import io
import time

import yaml
from fastapi.testclient import TestClient
from web_samples import VIEWER_PASSWORD, SignIn, csrf_of

from bonecast import DISCLAIMER
from bonecast.simulation import RESULT_COLUMNS
from bonecast.web.trials_page import TrialJobs

SPEC = {
    "name": "Small web trial",
    "seed": 3,
    "population": {"n": 20, "menopausal_status": "postmenopausal", "age_years": {"mean": 63}},
    "arms": [
        {"name": "untreated"},
        {
            "name": "anastrozole",
            "treatments": [
                {"drug": "anastrozole", "dose_mg": 1, "interval_days": 1, "start_month": 0}
            ],
        },
    ],
    "outputs": {"quantities": ["lumbar_spine", "ctx"], "months": [3, 6]},
}


def _jobs(client: TestClient) -> TrialJobs:
    jobs: TrialJobs = client.app.state.trial_jobs  # type: ignore[attr-defined]
    return jobs


def _post(client: TestClient, text: str, **extra: str) -> tuple[int, str, str]:
    page = client.get("/trials")
    data = {"csrf_token": csrf_of(page.text), "spec": text, **extra}
    response = client.post("/trials", data=data, follow_redirects=False)
    return response.status_code, response.headers.get("location", ""), response.text


def _wait(client: TestClient, job_url: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = client.get(f"{job_url}/progress").json()
        assert 0 <= progress["percent"] <= 100
        if progress["state"] in ("done", "failed"):
            return dict(progress)
        time.sleep(0.05)
    raise AssertionError("the trial did not finish within 60 s")


def test_form_is_prefilled_and_linked(clinician: TestClient) -> None:
    page = clinician.get("/trials")
    assert page.status_code == 200
    assert DISCLAIMER in page.text and 'href="/trials"' in page.text
    assert "population:" in page.text and 'type="file"' in page.text


def test_bad_spec_names_each_field_and_runs_nothing(clinician: TestClient) -> None:
    bad = {**SPEC, "population": {**SPEC["population"], "n": 0}, "colour": "red"}  # type: ignore[dict-item]
    code, _, text = _post(clinician, yaml.safe_dump(bad))
    assert code == 422
    assert "population.n:" in text and "colour: unknown key" in text
    assert DISCLAIMER in text
    assert _post(clinician, "name: [unclosed")[2].count("not valid YAML") == 1
    assert _jobs(clinician).store.count() == 0


def test_population_above_the_web_limit_is_refused(clinician: TestClient) -> None:
    big = {**SPEC, "population": {**SPEC["population"], "n": 20_001}}  # type: ignore[dict-item]
    code, _, text = _post(clinician, yaml.safe_dump(big))
    assert code == 422 and "at most 20000 patients per arm" in text
    assert _jobs(clinician).store.count() == 0


def test_good_spec_runs_with_plot_and_csv(clinician: TestClient) -> None:
    code, location, _ = _post(clinician, yaml.safe_dump(SPEC))
    assert code == 303 and location.startswith("/trials/")
    assert _wait(clinician, location) == {"state": "done", "percent": 100, "error": None}
    page = clinician.get(location)
    assert f'src="{location}/plot.png"' in page.text and DISCLAIMER in page.text
    plot = clinician.get(f"{location}/plot.png")
    assert plot.headers["content-type"] == "image/png" and plot.content.startswith(b"\x89PNG")
    result = clinician.get(f"{location}/results.csv")
    assert result.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(result.text)))
    assert tuple(rows[0]) == RESULT_COLUMNS
    assert len(rows) == 1 + 2 * 2 * 2  # arms x quantities x months
    assert "Small web trial" in clinician.get("/trials").text


def test_uploaded_file_wins_over_the_text(clinician: TestClient) -> None:
    page = clinician.get("/trials")
    response = clinician.post(
        "/trials",
        data={"csrf_token": csrf_of(page.text), "spec": "not: a spec"},
        files={"file": ("trial.yaml", yaml.safe_dump(SPEC).encode(), "application/yaml")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert _wait(clinician, response.headers["location"])["state"] == "done"


def test_viewer_may_view_but_not_run(clinician: TestClient, sign_in: SignIn) -> None:
    _, location, _ = _post(clinician, yaml.safe_dump(SPEC))
    _wait(clinician, location)
    viewer = sign_in("viewer", VIEWER_PASSWORD)
    page = viewer.get("/trials")
    assert "may view trial results but not run" in page.text and 'name="spec"' not in page.text
    assert viewer.get(f"{location}/results.csv").status_code == 200
    response = viewer.post(
        "/trials", data={"csrf_token": csrf_of(page.text), "spec": yaml.safe_dump(SPEC)}
    )
    assert response.status_code == 403
    assert _jobs(viewer).store.count() == 1


def test_missing_csrf_token_is_refused(clinician: TestClient) -> None:
    response = clinician.post("/trials", data={"spec": yaml.safe_dump(SPEC)})
    assert response.status_code == 403
    assert _jobs(clinician).store.count() == 0


def test_unknown_job_and_unfinished_results(clinician: TestClient) -> None:
    assert clinician.get("/trials/nope").status_code == 404
    assert clinician.get("/trials/nope/results.csv").status_code == 404
    assert clinician.get("/trials", follow_redirects=False).status_code == 200


def test_with_a_dask_scheduler_jobs_run_there_and_are_recorded(app_client: TestClient) -> None:
    from distributed import LocalCluster

    from bonecast.registry.trial_jobs import TrialJobStore
    from bonecast.web.trials_page import _spec

    registry = app_client.app.state.registry  # type: ignore[attr-defined]
    text = yaml.safe_dump(SPEC)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        jobs = TrialJobs(TrialJobStore(registry.engine), scheduler=cluster.scheduler_address)
        job_id = jobs.submit(text, _spec(text), "demo.clinician")
        deadline = time.monotonic() + 60
        while jobs.get(job_id).state not in ("done", "failed"):
            assert time.monotonic() < deadline, "the trial did not finish within 60 s"
            time.sleep(0.1)
        jobs.pool.shutdown(wait=True)
        assert cluster.scheduler.transition_counter > 0  # the chunks went through Dask
    assert jobs.get(job_id).state == "done" and jobs.get(job_id).percent == 100
    results = jobs.store.results(job_id)
    assert results is not None
    png, csv_text = results
    assert png.startswith(b"\x89PNG") and csv_text.startswith(",".join(RESULT_COLUMNS))
