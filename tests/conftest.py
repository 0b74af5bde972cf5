"""Shared fixtures: paths, the third-party raccoon dataset, subprocess helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RACCOON = ROOT.parent / "shared" / "datasets" / "raccoon"


@pytest.fixture(scope="session")
def raccoon() -> Path:
    if not RACCOON.is_dir():
        pytest.fail(f"{RACCOON} is missing: run the tests from a clone that has ../shared beside it")
    return RACCOON


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter of this venv, from the repo root."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
