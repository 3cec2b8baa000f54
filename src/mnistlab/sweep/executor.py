"""Where trials run: in this process one after another (``LocalExecutor``), or on Ray through
Ray Tune (``RayExecutor``): a local Ray started for the sweep, or an existing cluster.

Both take the same list of trials and report to the same ``Sink``; a trial is always
``run_trial`` (mnistlab.sweep.trial) writing its own run folder, so they give the same folders
and, for the same seeds and thread count on one machine, the same numbers.

Ray is an optional extra (``pip install 'mnistlab[sweep]'``) and is imported only here, inside
the functions that need it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.sweep.spec import TrialSpec
from mnistlab.sweep.trial import TrialOutcome, run_trial

INSTALL = "pip install 'mnistlab[sweep]'"
# A small object store: trials pass only their settings and a few numbers through Ray.
OBJECT_STORE_BYTES = 128 * 2**20
CONNECT_SECONDS = 5.0                  # to reach a cluster's head before giving up
HTTP_CHECK_SECONDS = 1.0               # for its first bytes, to tell a web server from a head
PROBE_SECONDS = 120.0                  # for every node to check the sweep folder


class Sink(Protocol):
    """What an executor tells the sweep while it runs (the driver keeps sweep.json with it)."""

    def started(self, trial_id: str) -> None: ...
    def epoch(self, trial_id: str, node: str, row: runs.HistoryRow) -> None: ...
    def finished(self, outcome: TrialOutcome) -> None: ...
    def retrying(self, trial_id: str, reason: str) -> None: ...   # worker died; retried
    def lost(self, trial_id: str, reason: str) -> None: ...       # out of retries
    def stopped(self, trial_id: str) -> None: ...                 # ended early (asha)


class Executor(Protocol):
    name: str

    def slots(self) -> int: ...
    def check_storage(self, root: Path) -> None: ...
    def run(self, trials: list[TrialSpec], root: Path, sink: Sink) -> None: ...
    def close(self) -> None: ...


# --- in this process -----------------------------------------------------------------------

class LocalExecutor:
    """One trial after another in this process (the report's default). A killed process loses
    only the epoch in flight: ``--resume`` continues from the run folders' checkpoints."""

    name = "local"

    def slots(self) -> int:
        return 1

    def check_storage(self, root: Path) -> None:
        pass

    def run(self, trials: list[TrialSpec], root: Path, sink: Sink) -> None:
        node = socket.gethostname()
        for trial in trials:
            sink.started(trial.id)
            outcome = run_trial(trial, root / trial.id, node=node,
                                on_epoch=lambda row, t=trial.id: sink.epoch(t, node, row))
            sink.finished(outcome)

    def close(self) -> None:
        pass


# --- on Ray --------------------------------------------------------------------------------

@dataclass
class RaySettings:
    address: str | None = None         # None: start a local Ray for the sweep; "auto"/HOST:PORT
    threads_per_trial: int = 1         # torch threads = Ray CPUs per trial
    concurrency: int | None = None     # trials at once; None: every CPU slot of the cluster
    max_failures: int = 3              # retries of a trial whose worker process died
    scheduler: str = "none"            # none | asha
    max_epochs: int = 5                # asha's last rung
    gpus_per_trial: float = 0.0        # Ray GPUs per trial (--device cuda: 1 by default)

    def resources(self) -> dict[str, float]:
        """What one trial asks Ray for."""
        out: dict[str, float] = {"cpu": self.threads_per_trial}
        if self.gpus_per_trial:
            out["gpu"] = self.gpus_per_trial
        return out


def require_ray(*, local: bool = True) -> None:
    """Import Ray (with Tune) for this process; UserError naming the install command when it
    is missing. ``local``: Ray will run on this machine only, so it binds the loopback address
    (Ray reads that choice when it is first imported, hence here)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")        # nothing leaves the machine
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the run folders log
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if local and "ray" not in sys.modules:
        # Ray's switch for single-machine use: every process binds and advertises 127.0.0.1
        # instead of this machine's network address.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        import ray.tune  # noqa: F401
    except ModuleNotFoundError:
        raise UserError(f"mnistlab sweep needs Ray, an optional extra: {INSTALL}") from None


class RayExecutor:
    """Trials as Ray Tune trials, one Ray CPU per torch thread.

    A trial whose worker process dies (killed, out of memory, node lost) is started again, up
    to ``max_failures`` times; it continues from its run folder's last checkpoint.
    """

    name = "ray"

    def __init__(self, settings: RaySettings) -> None:
        require_ray(local=settings.address is None)
        import ray

        self.settings = settings
        self.started_here = settings.address is None
        with _own_sigterm():
            if self.started_here:
                # "local": a Ray of its own, even where `ray start` left a cluster running on
                # this machine or RAY_ADDRESS names one (ray.init joined it, and refused the
                # CPU count it was given: a traceback)
                ray.init(address="local", num_cpus=os.cpu_count() or 1,
                         include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                         log_to_driver=False, logging_level="warning")
            else:
                _check_reachable(settings.address)
                try:
                    ray.init(address=settings.address, log_to_driver=False,
                             logging_level="warning")
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise UserError(
                        f"cannot join the Ray cluster at {settings.address} "
                        f"({_one_line(exc)}); start one with `ray start --head` or leave out "
                        "--address to use this machine. A cluster that asks for a token (Ray's "
                        "token authentication, which `ray start` may turn on) needs "
                        "RAY_AUTH_MODE=token in this shell too, and RAY_AUTH_TOKEN on another "
                        "machine") from None

    def _nodes(self) -> list[dict[str, Any]]:
        import ray

        return [n for n in ray.nodes() if n.get("Alive")
                and n.get("Resources", {}).get("CPU", 0) >= self.settings.threads_per_trial
                and n.get("Resources", {}).get("GPU", 0) >= self.settings.gpus_per_trial]

    def slots(self) -> int:
        t, g = self.settings.threads_per_trial, self.settings.gpus_per_trial
        return sum(min(int(n["Resources"]["CPU"] // t),
                       int(n["Resources"].get("GPU", 0) // g) if g else 1 << 30)
                   for n in self._nodes())

    def check_storage(self, root: Path) -> None:
        """Every node that can take a trial must see the sweep folder (a shared file system):
        the driver writes a marker there, a task on each node reads it back."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = self._nodes()
        if not nodes:
            gpus = (f" and {self.settings.gpus_per_trial:g} GPU(s)"
                    if self.settings.gpus_per_trial else "")
            raise UserError(f"the Ray cluster has no node with "
                            f"{self.settings.threads_per_trial} free CPU(s){gpus} for a trial")
        token = uuid.uuid4().hex
        marker = root / f".storage-check-{token}"
        marker.write_text(token, encoding="utf-8")
        try:
            probe = ray.remote(num_cpus=0)(_probe_storage)
            refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote(str(marker), token): n for n in nodes}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_SECONDS)
            bad = [f"{refs[r]['NodeManagerAddress']} (no answer)" for r in refs
                   if r not in ready]
            for r in ready:
                ok, host = ray.get(r)
                if not ok:
                    bad.append(f"{refs[r]['NodeManagerAddress']} ({host})")
        finally:
            marker.unlink(missing_ok=True)
        if bad:
            raise UserError(f"the sweep folder {root} is not reachable from node(s) "
                            f"{', '.join(bad)}; give --out a path on storage every node "
                            "mounts at the same place (e.g. NFS)")

    def run(self, trials: list[TrialSpec], root: Path, sink: Sink) -> None:
        from ray import tune

        s = self.settings
        scheduler = None
        if s.scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            scheduler = ASHAScheduler(time_attr="epoch", metric="test_accuracy", mode="max",
                                      max_t=s.max_epochs, grace_period=1)
        session = sum(1 for _ in (root / "tune").glob("session-*")) + 1 \
            if (root / "tune").is_dir() else 1
        tuner = tune.Tuner(
            tune.with_resources(ray_trial, s.resources()),
            param_space={"trial": tune.grid_search(
                [{"spec": t.to_dict(), "run_dir": str(root / t.id)} for t in trials])},
            tune_config=tune.TuneConfig(
                scheduler=scheduler, max_concurrent_trials=s.concurrency or self.slots(),
                reuse_actors=True, trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(
                name=f"session-{session}", storage_path=str(root / "tune"), verbose=0,
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                callbacks=[_bridge(sink)]))
        # The run folders hold the trials' results, not Tune's per-trial loggers (turned off
        # above); its result grid would warn about each missing one.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        tuner.fit()

    def close(self) -> None:
        import ray

        ray.shutdown()   # stops the local Ray this sweep started; leaves a cluster running


def ray_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: one trial, run in a Ray worker process on any node."""
    import ray
    from ray import tune

    trial = TrialSpec.from_dict(config["trial"]["spec"])
    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"

    def on_epoch(row: runs.HistoryRow) -> None:
        tune.report({"epoch": row.epoch, "test_accuracy": row.test_accuracy,
                     "train_loss": row.train_loss, "node": node})

    outcome = run_trial(trial, Path(config["trial"]["run_dir"]), node=node, on_epoch=on_epoch)
    m = outcome.metrics
    tune.report({"epoch": m.epochs if m else 0, "test_accuracy": m.test_accuracy if m else 0.0,
                 "node": node, "outcome": outcome.to_dict()})


def _trial_name(trial: Any) -> str:
    return str(trial.config["trial"]["spec"]["id"])


def _bridge(sink: Sink) -> Any:
    """A Tune callback (on the driver) that passes trial events to the sweep's sink."""
    from ray import tune

    class Bridge(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            sink.started(_trial_name(trial))

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if "outcome" in result:
                sink.finished(TrialOutcome.from_dict(result["outcome"]))
            else:
                sink.epoch(_trial_name(trial), str(result.get("node")), result)

        def on_trial_recover(self, iteration: int, trials: list, trial: Any,
                             **info: Any) -> None:
            sink.retrying(_trial_name(trial), _error_text(trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any,
                           **info: Any) -> None:
            sink.lost(_trial_name(trial), _error_text(trial))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            if "outcome" not in (trial.last_result or {}):
                sink.stopped(_trial_name(trial))

    return Bridge()


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    try:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()] if path else []
    except OSError:
        lines = []
    return _one_line(lines[-1]) if lines else "the trial's worker process died"


def _probe_storage(marker: str, token: str) -> tuple[bool, str]:
    host = socket.gethostname()
    try:
        return Path(marker).read_text(encoding="utf-8") == token, host
    except OSError as exc:
        return False, f"{host}: {exc.strerror}"


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler through ray.init, which installs Ray's own (SIGTERM
    then dumped a C++ stack and aborted, where mnistlab ends as on Ctrl-C: exit 143, what was
    saved kept, the JSON closed)."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def _check_reachable(address: str) -> None:
    """For HOST:PORT, a plain TCP connection first: ray.init would otherwise retry for a long
    while before failing. ("auto" finds the cluster this machine joined.)"""
    if address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected auto or HOST:PORT "
                        "(the head's address, as `ray start --head` prints it)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS) as conn:
            web = _answers_http(conn)
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address} "
                        f"({exc.strerror or exc}); start it with `ray start --head "
                        f"--port {port}` on that machine, or leave out --address") from None
    if web:
        # ray.init kept trying such a port without end (Ray's dashboard, 8265, is one)
        raise UserError(f"{address} answers as a web server, not as a Ray cluster's head (Ray's "
                        "dashboard is one, on 8265); give the port `ray start --head` "
                        "printed (6379 unless --port chose another)")


def _answers_http(conn: socket.socket) -> bool:
    """Whether the server on ``conn`` answers an HTTP/1 request as a web server does; a Ray
    head speaks gRPC (HTTP/2), which answers no such line."""
    try:
        conn.settimeout(HTTP_CHECK_SECONDS)
        conn.sendall(b"GET / HTTP/1.0\r\nHost: ray\r\n\r\n")
        return conn.recv(5) == b"HTTP/"
    except OSError:
        return False


def _one_line(exc: Any) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
