"""The documentation site builds with warnings as errors (what `make docs` runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly_with_the_generated_references(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "NO_MKDOCS_2_WARNING": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spec = (tmp_path / "reference" / "trial-spec" / "index.html").read_text(encoding="utf-8")
    assert "stop_when" in spec and "AdherenceModel" in spec  # generated from the schema
    api = (tmp_path / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "to_frame" in api and "Long format" in api  # generated from the docstrings
    parameters = (tmp_path / "model" / "parameters" / "index.html").read_text(encoding="utf-8")
    assert "e2_post_pg_ml" in parameters  # generated from the packaged parameter set
