"""How the Ray executor starts: a Ray of its own, this process's SIGTERM handler kept, and an
address that a web server answers refused. Ray's own start is replaced: these tests start no
Ray (the sweep's Ray tests do)."""

from __future__ import annotations

import http.server
import signal
import threading

import pytest

from mnistlab.errors import UserError

ray = pytest.importorskip("ray")
from mnistlab.sweep import executor  # noqa: E402


def test_a_local_ray_is_its_own_and_keeps_the_sigterm_handler(monkeypatch):
    # ray.init joined a `ray start` cluster or RAY_ADDRESS and refused num_cpus (a traceback),
    # and its SIGTERM handler dumped a C++ stack where mnistlab ends with exit 143
    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)        # as Ray's does

    def ours(signum, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    previous = signal.signal(signal.SIGTERM, ours)
    try:
        executor.RayExecutor(executor.RaySettings())
        assert seen["address"] == "local" and seen["num_cpus"] >= 1
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_address_a_web_server_answers_is_refused_at_once():
    # ray.init kept trying such a port without end (Ray's dashboard, 8265, is one)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(UserError, match="answers as a web server"):
            executor._check_reachable(f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_report_stopped_on_ray_is_interrupted_not_trained_again_here(monkeypatch, tmp_path):
    # Ray Tune takes Ctrl-C itself and returns: the report went on, trained the runs again
    # here, wrote over the earlier report and exited 0
    from mnistlab.sweep import report_hook
    from mnistlab.train.config import TrainConfig

    class Stopped:
        name = "ray"

        def __init__(self, settings):
            pass

        def check_storage(self, root):
            pass

        def run(self, trials, root, sink):             # ended by Ctrl-C: no trial finished
            pass

        def close(self):
            pass

    monkeypatch.setattr(report_hook, "RayExecutor", Stopped)
    jobs = [(TrainConfig(model=m, seed=0), tmp_path / "runs" / f"{m}-seed0")
            for m in ("fc", "cnn")]
    with pytest.raises(KeyboardInterrupt, match="2 report training"):
        report_hook.train_report_runs(jobs, executor="ray")

