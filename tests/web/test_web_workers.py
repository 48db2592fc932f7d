"""Two worker processes and a restart: sessions and trial jobs hold (``serve --workers 2``).

One server per module: started on a demo registry with no ``BONECAST_SECRET_KEY``, used by
every test here, restarted once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from test_trials_page import SPEC
from typer.testing import CliRunner
from web_samples import csrf_of

from bonecast.cli import app
from bonecast.registry.trial_jobs import INTERRUPTED
from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME
from bonecast.simulation import RESULT_COLUMNS

START_SECONDS = 120


class Server:
    """``bonecast serve --workers 2`` on a free port of 127.0.0.1."""

    def __init__(self, database: str) -> None:
        self.database = database
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "BONECAST_SECRET_KEY"}
        command = [sys.executable, "-m", "bonecast.cli", "serve", "--workers", "2"]
        command += ["--port", str(self.port), "--database", self.database]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError("the server did not answer within 120 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def get(self, path: str, cookies: httpx.Cookies) -> httpx.Response:
        """A GET on a new connection (the kernel picks the worker)."""
        with httpx.Client(base_url=self.url, cookies=cookies, timeout=30) as client:
            return client.get(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = f"sqlite:///{tmp_path_factory.mktemp('workers') / 'workers.db'}"
    assert CliRunner().invoke(app, ["demo", "--database", database]).exit_code == 0
    running = Server(database)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def session(server: Server) -> httpx.Cookies:
    """The demo clinician's cookies."""
    with httpx.Client(base_url=server.url) as client:
        token = csrf_of(client.get("/signin").text)
        data = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "csrf_token": token}
        assert client.post("/signin", data=data).status_code == 303
        return client.cookies


def _start_trial(server: Server, cookies: httpx.Cookies, spec: dict[str, object]) -> str:
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        token = csrf_of(client.get("/trials").text)
        response = client.post("/trials", data={"csrf_token": token, "spec": yaml.safe_dump(spec)})
    assert response.status_code == 303
    return str(response.headers["location"])


def test_sessions_and_jobs_hold_across_workers_and_a_restart(
    server: Server, session: httpx.Cookies
) -> None:
    pages = [server.get("/worklist", session) for _ in range(20)]
    assert [page.status_code for page in pages] == [200] * 20  # never sent to sign in again

    job = _start_trial(server, session, SPEC)
    polls = [server.get(f"{job}/progress", session) for _ in range(10)]
    assert [poll.status_code for poll in polls] == [200] * 10
    deadline = time.monotonic() + 120
    while server.get(f"{job}/progress", session).json()["state"] != "done":
        assert time.monotonic() < deadline, "the trial did not finish in 120 s"
        time.sleep(0.5)
    big = {
        **SPEC,
        "population": {**SPEC["population"], "n": 20_000},
        "outputs": {"quantities": ["lumbar_spine"], "months": [3, 120]},
    }
    unfinished = _start_trial(server, session, big)

    server.stop()
    server.start()

    assert server.get("/worklist", session).status_code == 200  # same key after the restart
    assert "Small web trial" in server.get(job, session).text
    csv = server.get(f"{job}/results.csv", session)
    assert csv.status_code == 200 and csv.text.startswith(",".join(RESULT_COLUMNS))
    assert (
        server.get(f"{unfinished}/progress", session).json()
        == {
            "state": "failed",
            "percent": 0,
            "error": INTERRUPTED,
        }
        or server.get(f"{unfinished}/progress", session).json()["error"] == INTERRUPTED
    )


def test_rotating_the_key_signs_everyone_out_after_a_restart(
    server: Server, session: httpx.Cookies
) -> None:
    result = CliRunner().invoke(app, ["db", "rotate-key", "--database", server.database])
    assert result.exit_code == 0, result.output
    server.stop()
    server.start()
    page = server.get("/worklist", session)
    assert page.status_code == 303 and page.headers["location"] == "/signin"
