"""Ray for the sweep tests: a short temp dir of its own (socket paths are length-limited), usage
stats and token auth off (nothing leaves the machine; everything binds 127.0.0.1), and every
Ray process that a test starts is ended by the test.

Each Ray process of a test carries its temp dir (``RAY_TMPDIR``) in its environment, so the
teardown finds exactly those processes, and no other, in /proc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LOOPBACK

SRC = Path(__file__).resolve().parents[2] / "src"



def ray_processes(tmpdir: str) -> list[int]:
    """Processes whose environment names ``tmpdir`` as RAY_TMPDIR: this test's Ray only."""
    needle = f"RAY_TMPDIR={tmpdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def stop_processes(pids: list[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:       # a zombie is dead for our purpose
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False


class RayEnv:
    """Environment and helpers for one test's Ray processes."""

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.env = {**os.environ, "RAY_TMPDIR": tmpdir, "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(SRC),
                    # Ray's single-machine switch: every process binds 127.0.0.1 only
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "OMP_WAIT_POLICY": "PASSIVE"}
        self.procs: list[subprocess.Popen] = []

    def mnistlab(self, *args: str, **kwargs) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-m", "mnistlab", *args], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, **kwargs)
        self.procs.append(p)
        return p

    def ray_cli(self, *args: str) -> subprocess.Popen:
        """`ray ARGS...`, keeping a loopback --node-ip-address (tests/sweep/ray_loopback.py)."""
        p = subprocess.Popen([sys.executable, str(LOOPBACK), *args], env=self.env,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        stop_processes(ray_processes(self.tmpdir))


@pytest.fixture
def ray_env() -> Iterator[RayEnv]:
    pytest.importorskip("ray.tune")
    # /tmp/rayXXXXXX rather than tmp_path: Ray's socket paths must stay under 107 bytes
    tmpdir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = RayEnv(tmpdir)
    try:
        yield env
    finally:
        env.stop_all()
        left = [p for p in ray_processes(tmpdir) if _alive(p)]
        shutil.rmtree(tmpdir, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"
