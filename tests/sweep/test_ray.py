"""The sweep on a real Ray: a local Ray of 2 CPUs, a killed worker, a killed driver and its
resume, and a two-node cluster on this machine (every process bound to 127.0.0.1)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from helpers import LOOPBACK, SAME, TINY, checkpointed_epoch, reference_metrics, wait_for

pytestmark = pytest.mark.timeout(420)


def _json(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"rc {proc.returncode}\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def test_killed_worker_is_retried_and_ends_with_the_uninterrupted_metrics(ray_env, tmp_path):
    out = tmp_path / "sweep"
    proc = ray_env.mnistlab("sweep", *TINY, "--out", str(out), "--json")

    def a_trial_mid_run():
        for d in sorted(out.glob("fc-*")):
            worker = d / ".sweep-worker.json"
            if worker.is_file() and checkpointed_epoch(d) >= 1 and \
                    not (d / "metrics.json").exists():
                try:
                    return d, json.loads(worker.read_text())["pid"]
                except (OSError, ValueError):
                    return None
        return None

    run_dir, pid = wait_for(a_trial_mid_run, 240, "a trial mid-run", proc)
    epochs_before = checkpointed_epoch(run_dir)
    os.kill(pid, signal.SIGKILL)
    result = _json(proc)

    trial = next(t for t in result["trials"] if t["id"] == run_dir.name)
    assert trial["state"] == "done" and trial["attempts"] >= 2, trial
    record = json.loads((out / "sweep.json").read_text())
    saved = next(t for t in record["trials"] if t["id"] == run_dir.name)
    assert saved["resumed_from"] and saved["resumed_from"][0] >= epochs_before, saved
    assert all(t["state"] == "done" for t in result["trials"])
    expected = reference_metrics(record["spec"], run_dir.name, tmp_path / "reference")
    got = json.loads((run_dir / "metrics.json").read_text())
    assert {k: got[k] for k in SAME} == {k: expected[k] for k in SAME}
    # the trial's folder is an ordinary run: evaluate reads it
    assert len(result["groups"]) == 2 and all(g["n"] == 2 for g in result["groups"])


def test_killed_driver_resumes_without_training_anything_twice(ray_env, tmp_path):
    out = tmp_path / "sweep"
    proc = ray_env.mnistlab("sweep", *TINY, "--concurrency", "1", "--out", str(out))

    def one_done_one_started():
        done = [d for d in out.glob("fc-*") if (d / "metrics.json").exists()]
        started = [d for d in out.glob("fc-*") if not (d / "metrics.json").exists()
                   and checkpointed_epoch(d) >= 2]
        return (done, started[0]) if done and started else None

    done, partial = wait_for(one_done_one_started, 300, "a finished and a started trial", proc)
    os.killpg(proc.pid, signal.SIGKILL)               # the driver and all it started, at once
    proc.wait(timeout=30)
    ray_env.stop_all()                                  # whatever of its Ray outlived it
    mtimes = {d.name: (d / "metrics.json").stat().st_mtime_ns for d in done}
    kept = checkpointed_epoch(partial)

    result = _json(ray_env.mnistlab("sweep", "--resume", str(out), "--json", "--quiet"))
    assert all(t["state"] == "done" for t in result["trials"]), result["trials"]
    for name, mtime in mtimes.items():                 # finished trials were not touched
        assert (out / name / "metrics.json").stat().st_mtime_ns == mtime
    record = json.loads((out / "sweep.json").read_text())
    again = next(t for t in record["trials"] if t["id"] == partial.name)
    assert again["resumed_from"] and again["resumed_from"][-1] >= kept, again
    assert record["sessions"] == 2
    expected = reference_metrics(record["spec"], partial.name, tmp_path / "reference")
    got = json.loads((partial / "metrics.json").read_text())
    assert {k: got[k] for k in SAME} == {k: expected[k] for k in SAME}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_cluster_runs_trials_on_both_nodes(ray_env, tmp_path):
    port = _free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--block"]
    ray_env.ray_cli("start", "--head", "--port", str(port), "--include-dashboard", "false",
                    "--ray-client-server-port", str(_free_port()), *common)
    wait_for(lambda: _reachable(port), 120, "the head node", step=0.5)
    ray_env.ray_cli("start", "--address", f"127.0.0.1:{port}", *common)
    wait_for(lambda: _nodes(ray_env, port) >= 2, 180, "the second node", step=2)

    out = tmp_path / "sweep"
    result = _json(ray_env.mnistlab("sweep", *TINY, "--epochs", "2", "--address",
                                    f"127.0.0.1:{port}", "--out", str(out), "--json"))
    assert all(t["state"] == "done" for t in result["trials"])
    nodes = {t["node"] for t in result["trials"]}
    assert len(nodes) == 2, nodes


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _nodes(ray_env, port: int) -> int:
    res = subprocess.run([sys.executable, str(LOOPBACK), "status", "--address",
                          f"127.0.0.1:{port}"],
                         env=ray_env.env, capture_output=True, text=True, timeout=60)
    lines = res.stdout.split("Active:")[-1].split("Pending:")[0]
    return sum(1 for ln in lines.splitlines() if ln.strip().startswith("1 node_"))
