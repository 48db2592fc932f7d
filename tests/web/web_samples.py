"""Helpers of the web tests: the viewer's password and the CSRF token of a page."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient

VIEWER_PASSWORD = "viewer-password-1"
SignIn = Callable[[str, str], TestClient]


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)
