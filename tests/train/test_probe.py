"""--engine auto by measurement: the probe picks the faster engine, its cache (hit, stale key,
damaged file), explicit engines skip it, and a run records the choice without moving its RNG."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mnistlab import atomic, runs
from mnistlab.models import build_model
from mnistlab.threads import torch_threads
from mnistlab.train import precision, probe
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import native_bf16
from mnistlab.train.fit import fit
from mnistlab.train.precision import choose_engine, prepare_model


@pytest.fixture
def cnn() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        return prepare_model(build_model("cnn"), "bf16")


@pytest.fixture
def fake_measure(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, float]]]:
    """Replaces the measurement: returns the timings given (default: fused faster), counting
    the calls; the real timing is exercised once, in the run test below."""
    calls: list[dict[str, float]] = []
    timings = {"fused": 5.0, "autograd": 12.0}

    def measure(factories: object, model: object, batch_size: int, precision: str,
                input_shape: tuple[int, ...] = (1, 28, 28)) -> dict[str, float]:
        calls.append(dict(timings))
        return dict(timings)

    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "busy", lambda: False)   # the test machine's load decides nothing
    calls.append(timings)               # calls[0]: the timings to return (tests may change it)
    yield calls


def _cache(tmp_path: Path) -> probe.ProbeCache:
    return probe.ProbeCache(tmp_path / probe.CACHE_FILE)


def test_the_faster_engine_wins_whichever_it_is(tmp_path: Path, cnn: torch.nn.Module,
                                                fake_measure: list[dict[str, float]]) -> None:
    config = TrainConfig(model="cnn", engine="auto")
    first = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    assert first.engine == "fused" and not first.cached
    assert first.timings == {"fused": 5.0, "autograd": 12.0}
    assert first.reason.startswith("probe: fused 5.0 ms/step vs autograd 12.0 ms/step")
    fake_measure[0].update(fused=30.0)
    second = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path / "other"))
    assert second.engine == "autograd"
    assert second.reason.startswith("probe: autograd 12.0 ms/step vs fused 30.0 ms/step")


def test_a_cache_hit_does_not_probe_again(tmp_path: Path, cnn: torch.nn.Module,
                                          fake_measure: list[dict[str, float]]) -> None:
    config = TrainConfig(model="cnn")
    choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    again = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    assert len(fake_measure) - 1 == 1
    assert again.cached and again.engine == "fused" and "(cached " in again.reason


@pytest.mark.parametrize("change", ["threads", "torch", "batch", "isa"])
def test_a_changed_key_probes_again(tmp_path: Path, cnn: torch.nn.Module, change: str,
                                    fake_measure: list[dict[str, float]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = TrainConfig(model="cnn", batch_size=64)
    choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    threads = torch.get_num_threads()
    if change == "threads":
        threads = 2 if threads == 1 else 1
    elif change == "torch":
        monkeypatch.setattr(probe.torch, "__version__", "9.9.9")
    elif change == "isa":         # a CPU of another generation under the same name
        monkeypatch.setattr(probe, "isa_flags", lambda: ["avx512f", "amx_bf16", "amx_tile"])
    else:
        config = dataclasses.replace(config, batch_size=32)
    with torch_threads(threads):
        later = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    assert len(fake_measure) - 1 == 2 and not later.cached
    # both measurements are kept: going back is a hit
    entries = json.loads((tmp_path / probe.CACHE_FILE).read_text())["entries"]
    assert len(entries) == 2


def test_a_busy_measurement_is_redone_once_the_machine_is_quiet(
        tmp_path: Path, cnn: torch.nn.Module, fake_measure: list[dict[str, float]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = TrainConfig(model="cnn")
    monkeypatch.setattr(probe, "busy", lambda: True)
    first = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    assert "measured now, on a busy machine" in first.reason
    assert choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).cached   # still busy
    monkeypatch.setattr(probe, "busy", lambda: False)
    quiet = choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    assert not quiet.cached and "busy" not in quiet.reason and len(fake_measure) - 1 == 2
    assert choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).cached


@pytest.mark.parametrize("content", ["{not json", "[]", '{"format": "mnistlab-engine-probe/1", '
                                     '"entries": {"x": 1}}', "", "[" * 100_000 + "]" * 100_000])
def test_a_damaged_cache_is_probed_again_and_rewritten(
        tmp_path: Path, cnn: torch.nn.Module, content: str,
        fake_measure: list[dict[str, float]]) -> None:
    (tmp_path / probe.CACHE_FILE).write_text(content)
    config = TrainConfig(model="cnn")
    assert choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).engine == "fused"
    assert choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).cached
    assert len(fake_measure) - 1 == 1


@pytest.mark.timeout(30)
def test_a_fifo_in_the_cache_s_place_does_not_block(tmp_path: Path, cnn: torch.nn.Module,
                                                    fake_measure: list[dict[str, float]]) -> None:
    os.mkfifo(tmp_path / probe.CACHE_FILE)          # reading it would wait for a writer
    config = TrainConfig(model="cnn")
    assert choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).engine == "fused"
    assert (tmp_path / probe.CACHE_FILE).is_file()  # replaced by a real cache


@pytest.mark.timeout(30)
def test_a_lock_held_elsewhere_skips_the_cache_instead_of_waiting(
        tmp_path: Path, cnn: torch.nn.Module, monkeypatch: pytest.MonkeyPatch,
        fake_measure: list[dict[str, float]]) -> None:
    # a stopped process (or a stale NFS lock) holding it kept a training waiting without end
    fcntl = pytest.importorskip("fcntl")
    monkeypatch.setattr(probe, "LOCK_SECONDS", 0.2)
    with open(tmp_path / (probe.CACHE_FILE + ".lock"), "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        chosen = choose_engine(TrainConfig(model="cnn"), cnn, "bf16", cache=_cache(tmp_path))
    assert chosen.engine == "fused" and not chosen.cached
    assert not (tmp_path / probe.CACHE_FILE).exists()           # measured again next time


def test_processes_probing_at_once_each_keep_their_entry(
        tmp_path: Path, cnn: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    write = atomic.write_json

    def slow_write(path: Path, data: object) -> None:   # widens the read-modify-write window
        time.sleep(0.05)
        write(path, data)

    monkeypatch.setattr(probe.atomic, "write_json", slow_write)
    cache = _cache(tmp_path)
    keys = [probe.probe_key("cnn", cnn, batch_size=b, precision="bf16", engines=("fused",))
            for b in range(1, 7)]
    threads = [threading.Thread(target=cache.store, args=(k, probe.ProbeResult(
        {"fused": 1.0}, probed=probe.now()))) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(cache.load(k) is not None for k in keys)


def test_a_tampered_entry_is_not_believed(tmp_path: Path, cnn: torch.nn.Module,
                                          fake_measure: list[dict[str, float]]) -> None:
    config = TrainConfig(model="cnn")
    choose_engine(config, cnn, "bf16", cache=_cache(tmp_path))
    path = tmp_path / probe.CACHE_FILE
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["timings"] = {"fused": "fast", "autograd": 1.0}
    path.write_text(json.dumps(data))
    assert not choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).cached
    for entry in data["entries"].values():
        entry["timings"] = {"fused": float("inf"), "autograd": 1.0}    # JSON's Infinity
    path.write_text(json.dumps(data))
    assert not choose_engine(config, cnn, "bf16", cache=_cache(tmp_path)).cached


def test_the_cache_is_written_atomically(tmp_path: Path, cnn: torch.nn.Module,
                                         fake_measure: list[dict[str, float]],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[Path] = []
    real = atomic.write_json

    def spy(path: str | os.PathLike[str], obj: object) -> None:
        written.append(Path(path))
        real(path, obj)

    monkeypatch.setattr(probe.atomic, "write_json", spy)
    choose_engine(TrainConfig(model="cnn"), cnn, "bf16", cache=_cache(tmp_path))
    assert written == [tmp_path / probe.CACHE_FILE]
    # no temp file left; the lock that orders writers stays, empty
    assert sorted(p.name for p in tmp_path.iterdir()) == [probe.CACHE_FILE,
                                                          probe.CACHE_FILE + ".lock"]


def test_an_unwritable_cache_still_chooses(tmp_path: Path, cnn: torch.nn.Module,
                                           fake_measure: list[dict[str, float]]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")            # a file where the cache folder should be
    choice = choose_engine(TrainConfig(model="cnn"), cnn, "bf16",
                           cache=probe.ProbeCache(blocker / probe.CACHE_FILE))
    assert choice.engine == "fused"


def test_the_cache_folder_follows_its_variable(tmp_path: Path, cnn: torch.nn.Module,
                                               fake_measure: list[dict[str, float]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "here"))
    choose_engine(TrainConfig(model="cnn"), cnn, "bf16")
    assert (tmp_path / "here" / probe.CACHE_FILE).is_file()


@pytest.mark.parametrize(("engine", "prec", "device", "expected", "reason"), [
    ("fused", "bf16", "cpu", "fused", "asked for"),
    ("autograd", "bf16", "cpu", "autograd", "asked for"),
    ("fused", "fp32", "cpu", "fused", "asked for"),            # the fused step in fp32 too
    ("auto", "bf16", "cuda", "autograd", "only autograd trains this model on cuda"),
])
def test_no_probe_without_a_choice(tmp_path: Path, cnn: torch.nn.Module, engine: str,
                                   prec: str, device: str, expected: str, reason: str,
                                   fake_measure: list[dict[str, float]]) -> None:
    choice = choose_engine(TrainConfig(model="cnn", engine=engine), cnn, prec, device,
                           cache=_cache(tmp_path))
    assert (choice.engine, choice.reason, choice.timings) == (expected, reason, {})
    assert len(fake_measure) == 1 and not (tmp_path / probe.CACHE_FILE).exists()


def test_timing_skips_the_warm_up_and_takes_the_median() -> None:
    ticks = iter(range(1000))
    durations = iter([0.0, 0.0, 1.0, 9.0, 2.0, 3.0, 2.0, 2.0, 2.0])   # 2 warm-up, 7 timed
    clock_now = [0.0]

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        clock_now[0] += next(durations)
        next(ticks)

    assert probe.time_in_turn({"step": step}, torch.zeros(1), torch.zeros(1),
                              clock=lambda: clock_now[0])["step"] == 1000 * 2.0


def test_engines_are_timed_in_turn_so_a_spell_of_load_falls_on_each() -> None:
    # "fast" takes 1 ms a step and "slow" 1.2 ms; steps 9-12 of the whole sequence (warm-up
    # included) run 10 ms longer, as if another job held the cores for a moment: timed in
    # turn, the spell falls on both engines, and each one's median stays its own
    clock_now, calls = [0.0], []

    def timed(name: str, seconds: float):
        def step(x: torch.Tensor, y: torch.Tensor) -> None:
            calls.append(name)
            clock_now[0] += seconds + (0.01 if 9 <= len(calls) <= 12 else 0.0)
        return step

    timings = probe.time_in_turn({"fast": timed("fast", 0.001), "slow": timed("slow", 0.0012)},
                                 torch.zeros(1), torch.zeros(1), clock=lambda: clock_now[0])
    assert timings == {"fast": 1.0, "slow": 1.2}
    # two warm-up steps each, then rounds of one step each, the order rotating
    assert calls[:4] == ["fast", "fast", "slow", "slow"]
    assert calls[4:12] == ["fast", "slow", "slow", "fast", "fast", "slow", "slow", "fast"]
    assert calls.count("fast") == calls.count("slow") == probe.WARMUP_STEPS + probe.TIMED_STEPS
    assert calls[8:12] == ["fast", "slow", "slow", "fast"]       # the spell: two steps of each


def test_an_old_config_without_engine_choice_reads(tmp_path: Path) -> None:
    old = runs.read_config(Path(__file__).parents[1] / "runs" / "fixtures" / "fc-v0.1.0")
    assert old.engine_choice is None and "engine_choice" not in old.to_dict()
    choice = runs.EngineChoice("fused", "probe: ...", {"fused": 5.0, "autograd": 9.5},
                               cached=True, probed="2026-01-31T12:00:00Z")
    runs.write_config(tmp_path, dataclasses.replace(old, engine_choice=choice))
    data = json.loads((tmp_path / runs.CONFIG).read_text())
    assert list(data)[-1] == "engine_choice"
    assert runs.read_config(tmp_path).engine_choice == choice


def test_a_run_records_the_choice_and_the_probe_moves_no_rng(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probe, once: an auto run (which probes) and a run asking for the engine the
    probe chose (which does not) train to the same figures. In auto's precision: the fused
    step and autograd are both candidates in bf16 and in fp32."""
    monkeypatch.setenv("MNISTLAB_CACHE_DIR", str(tmp_path / "cache"))
    small = {"model": "cnn", "epochs": 1, "limit": 256, "test_limit": 256, "batch_size": 64,
             "threads": 1, "precision": "bf16" if native_bf16("cpu") else "fp32", "seed": 5}
    auto = fit(TrainConfig(engine="auto", **small), tmp_path / "auto")
    recorded = runs.read_config(tmp_path / "auto").engine_choice
    assert recorded is not None and recorded.engine == auto.metrics.engine
    assert recorded.reason.startswith("probe: ") and "measured now" in recorded.reason
    # the candidates: the fused step and autograd, and in fp32 the Winograd step and
    # autograd in channels_last too
    assert set(recorded.timings) == ({"fused", "autograd"} if small["precision"] == "bf16"
                                     else {"fused", "winograd", "autograd", "channels-last"})
    assert all(t > 0 for t in recorded.timings.values())
    asked = fit(TrainConfig(engine=auto.metrics.engine, **small), tmp_path / "asked")
    assert runs.read_config(tmp_path / "asked").engine_choice.reason == "asked for"
    figures = [(r.train_loss, r.train_accuracy, r.test_loss) for r in auto.history]
    assert figures == [(r.train_loss, r.train_accuracy, r.test_loss) for r in asked.history]
    assert precision.CANDIDATES.keys() >= {"fused", "winograd", "autograd", "channels-last"}
