"""Browser fixtures: the web app served by uvicorn on loopback, and Debian's headless Chromium.

The application runs on a SQLite registry with the demo data and a 5-year forecast (its plans
are what the clinician reads) in a background thread for the whole session. The browser is
``/usr/bin/chromium`` driven by Playwright; without it the tests skip, unless ``CI`` is set,
where they fail (``make chromium`` installs it).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import uvicorn
from browser_samples import LiveApp, TargetPatient
from playwright.sync_api import BrowserContext, Page, sync_playwright

from bonecast.api import create_app
from bonecast.registry import Registry
from bonecast.services.demo import seed_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 30.0
FORECAST_YEARS = 5
STEP_TIMEOUT_MS = 60_000
"""A patient page computes its forecast on first view (a few seconds on 2 busy cores)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_health(url: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the uvicorn server stopped while starting")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url}/health did not answer within {STARTUP_TIMEOUT_S:.0f} s")


@pytest.fixture(scope="session")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The web app on a seeded SQLite registry, served on 127.0.0.1 at a free port."""
    database = tmp_path_factory.mktemp("browser") / "browser.db"
    app = create_app(f"sqlite:///{database}", forecast_years=FORECAST_YEARS)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-browser-tests", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(base_url, thread)  # the schema is migrated once /health answers
        registry: Registry = app.state.registry
        seed_demo(registry)
        yield LiveApp(base_url, registry)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def target_patient(live_app: LiveApp) -> TargetPatient:
    """The first demo patient (by id) whose latest scan is more than a year old."""
    year_ago = date.today() - timedelta(days=366)
    with live_app.registry.session() as session:
        for patient in sorted(session.list_patients(limit=100), key=lambda p: p.id):
            scans = session.list_scans(patient.id)
            if scans and scans[-1].scan_date < year_ago and "total_hip" in scans[-1].sites:
                return TargetPatient(
                    id=patient.id,
                    mrn=patient.mrn,
                    family_name=patient.family_name or "",
                    given_name=patient.given_name or "",
                    scanner=str(scans[-1].scanner),
                )
    raise AssertionError("no demo patient has a scan older than a year")


@pytest.fixture(scope="session")
def browser(
    live_app: LiveApp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    """Debian's Chromium, headless, on a fresh profile, with no background networking.

    The profile asks Chromium to download PDFs rather than show them in its viewer, so that a
    click on the report link is a download, as for a user who saves the report.
    """
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (install Debian's chromium: make chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so the browser tests may not skip")
        pytest.skip(reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    (profile / "Default").mkdir()
    preferences = {"plugins": {"always_open_pdf_externally": True}}
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            base_url=live_app.base_url,
            accept_downloads=True,
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    """A new page, signed out (the browser's cookies are cleared first)."""
    browser.clear_cookies()
    page = browser.new_page()
    try:
        yield page
    finally:
        page.close()
