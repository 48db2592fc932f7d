"""axe-core in the browser tests: WCAG 2.1 A/AA checks of a page, from the axe.min.js shipped
with axe-playwright-python (no CDN)."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

BLOCKING_IMPACTS = ("serious", "critical")
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
_axe = Axe()


def assert_accessible(page: Page) -> None:
    """No serious or critical WCAG 2.1 AA violation on the page as it is now."""
    results = _axe.run(page, options={**WCAG_AA, "resultTypes": ["violations"]})
    blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING_IMPACTS]
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in blocking
    )
    assert not blocking, f"{page.url}:\n{report}"
