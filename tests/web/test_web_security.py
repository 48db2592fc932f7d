"""The hardened web app: security headers, CSRF on sign-in, throttled sign-in, one session key,
out-of-range ids, and trial jobs that outlive their server process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from web_samples import csrf_of

from bonecast.api import create_app
from bonecast.api.throttle import USERNAME_LIMIT
from bonecast.registry import Registry
from bonecast.registry.trial_jobs import INTERRUPTED, TrialJobStore
from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME

PAGES = ["/signin", "/worklist", "/patients/1", "/trials"]


def _signin(client: TestClient, username: str, password: str) -> int:
    token = csrf_of(client.get("/signin").text)
    response = client.post(
        "/signin",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    return response.status_code


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_security_headers_and_are_not_cached(
    clinician: TestClient, path: str
) -> None:
    response = clinician.get(path)
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "http" not in csp  # no third-party host
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers  # plain http here


def test_pages_have_no_inline_script(clinician: TestClient) -> None:
    for path in PAGES:
        html = clinician.get(path).text
        assert html.count("<script") == html.count('<script src="/static/'), path
        assert " onclick=" not in html and " onload=" not in html


def test_hsts_over_https_and_static_files_cacheable(app_client: TestClient) -> None:
    secure = TestClient(app_client.app, base_url="https://testserver")
    assert "max-age=" in secure.get("/signin").headers["strict-transport-security"]
    static = app_client.get("/static/app.js")
    assert static.status_code == 200 and static.headers.get("cache-control") != "no-store"
    assert static.headers["x-content-type-options"] == "nosniff"


def test_sign_in_without_or_with_a_wrong_csrf_token_is_forbidden(app_client: TestClient) -> None:
    fresh = TestClient(app_client.app)
    credentials = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD}
    assert fresh.post("/signin", data=credentials, follow_redirects=False).status_code == 403
    fresh.get("/signin")  # a CSRF cookie, but the form's token is another
    wrong = credentials | {"csrf_token": "forged"}
    assert fresh.post("/signin", data=wrong, follow_redirects=False).status_code == 403
    assert "bonecast_session" not in fresh.cookies


def test_wrong_passwords_lock_the_username_out_and_are_audited(app_client: TestClient) -> None:
    codes = [_signin(app_client, DEMO_USERNAME, "wrong-password") for _ in range(USERNAME_LIMIT)]
    assert codes == [401] * (USERNAME_LIMIT - 1) + [429]
    token = csrf_of(app_client.get("/signin").text)
    response = app_client.post(
        "/signin",
        data={"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 429  # even the right password, while locked out
    assert 0 < int(response.headers["retry-after"]) <= 15 * 60
    assert "Too many failed sign-ins" in response.text
    registry: Registry = app_client.app.state.registry  # type: ignore[attr-defined]
    with registry.session() as session:
        failures = session.audit_log(entity="signin_failures", limit=1000)
        lockouts = session.audit_log(entity="lockouts")
    usernames = [e for e in failures if e.changes["scope"] == "username"]
    assert len(usernames) == USERNAME_LIMIT and usernames[0].changes["key"] == DEMO_USERNAME
    assert [e.changes["key"] for e in lockouts] == [DEMO_USERNAME]
    with registry.session(actor="admin") as session:  # what bonecast users unlock does
        assert session.lift_lockout("username", DEMO_USERNAME) == 1
    assert _signin(app_client, DEMO_USERNAME, DEMO_PASSWORD) == 303


def test_many_usernames_from_one_address_lock_the_address_out(app_client: TestClient) -> None:
    codes = [_signin(app_client, f"nobody{k}", "wrong-password") for k in range(30)]
    assert codes[-1] == 429 and set(codes[:-1]) == {401}
    assert _signin(app_client, DEMO_USERNAME, DEMO_PASSWORD) == 429


def test_two_apps_on_one_registry_share_the_session_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BONECAST_SECRET_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with (
        TestClient(create_app(url, forecast_years=0)) as first,
        TestClient(create_app(url, forecast_years=0)) as second,
    ):
        signed = first.app.state.web_signer.session_value(1)  # type: ignore[attr-defined]
        assert second.app.state.web_signer.session_user_id(signed) == 1  # type: ignore[attr-defined]
    monkeypatch.setenv("BONECAST_SECRET_KEY", "an overriding key of the administrator")
    with TestClient(create_app(url, forecast_years=0)) as third:
        assert third.app.state.web_signer.session_user_id(signed) is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("patient_id", ["0", "-1", str(2**63), str(2**64 + 5), "1e400"])
def test_out_of_range_patient_ids_are_refused_not_500(
    clinician: TestClient, patient_id: str
) -> None:
    assert clinician.get(f"/patients/{patient_id}").status_code == 422
    assert clinician.get(f"/patients/{patient_id}/report").status_code == 422


def test_a_job_left_running_by_a_stopped_process_shows_as_failed(app_client: TestClient) -> None:
    registry: Registry = app_client.app.state.registry  # type: ignore[attr-defined]
    store = TrialJobStore(registry.engine)
    store.submit("orphan", "name: x", "demo.clinician", 100)
    store.running("orphan")
    with registry.engine.begin() as connection:  # as if a process now gone had run it
        connection.exec_driver_sql(
            "UPDATE trial_jobs SET runner = 'localhost-of-the-past:1:0' WHERE id = 'orphan'"
        )
    assert store.fail_interrupted() == 0  # another host's process: may still run
    with registry.engine.begin() as connection:
        connection.exec_driver_sql(
            f"UPDATE trial_jobs SET runner = '{socket.gethostname()}:999999999:0' "
            "WHERE id = 'orphan'"
        )
    assert store.fail_interrupted() == 1
    job = store.get("orphan")
    assert job is not None and job.state == "failed" and job.error == INTERRUPTED
