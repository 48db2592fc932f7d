"""Screenshots of the web app for the README, made from the demo data.

Run from the repository root (needs Debian's Chromium, ``make chromium``):

    python scripts/screenshots.py [docs/screenshots]

It serves the app on a throwaway SQLite registry seeded with the demo patients (5-year
forecast), signs in as the demo clinician in headless Chromium, and saves the patient page, the
BMD-versus-age chart, the clinician's report and the patient summary of the first demo patient
with two scans or more, as PNG files.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from bonecast.api import create_app
from bonecast.registry import Registry
from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME, seed_demo

CHROMIUM = "/usr/bin/chromium"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _patient_with_history(registry: Registry) -> int:
    with registry.session() as session:
        for patient in sorted(session.list_patients(limit=100), key=lambda p: p.id):
            if len(session.list_scans(patient.id)) >= 2 and session.list_labs(patient.id):
                return patient.id
    raise SystemExit("no demo patient has two scans and a lab result")


def main(out: Path) -> None:
    """Save the four screenshots under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(f"sqlite:///{folder}/demo.db", forecast_years=5)
        port = _port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        registry: Registry = app.state.registry
        seed_demo(registry)
        patient = _patient_with_history(registry)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport={"width": 1100, "height": 900}, base_url=base)
                page.set_default_timeout(120_000)
                page.goto("/signin")
                page.get_by_label("Username").fill(DEMO_USERNAME)
                page.get_by_label("Password").fill(DEMO_PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url("**/worklist")
                page.goto(f"/patients/{patient}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / "patient-page.png"), full_page=True)
                age = page.locator("section", has=page.locator("#h-age")).locator("img")
                age.screenshot(path=str(out / "bmd-vs-age.png"))
                for path, name in (("report", "report"), ("summary", "patient-summary")):
                    page.goto(f"/patients/{patient}/{path}")
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
