"""`mnistlab serve --workers N`: several uvicorn processes answer, and bad counts are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app_helpers import trained_run  # noqa: F401
from mnistlab.perf.serve_bench import sample_png, workers_scaling

pytestmark = pytest.mark.timeout(180)


def test_two_workers_answer_every_request(trained_run):  # noqa: F811
    [r] = workers_scaling(trained_run, [2], requests=40, clients=4, body=sample_png())
    assert r["workers"] == 2 and r["requests"] == 40 and r["errors"] == 0
    assert r["requests_per_s"] > 0 and r["p99_ms"] >= r["p50_ms"]


def test_zero_workers_is_a_user_error(trained_run):  # noqa: F811
    p = subprocess.run([sys.executable, "-m", "mnistlab", "serve", str(trained_run),
                        "--workers", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.startswith("error: --workers must be a whole number >= 1")
    assert len(p.stderr.strip().splitlines()) == 1
