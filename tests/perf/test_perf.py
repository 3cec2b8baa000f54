"""The fast recipes, augmentation, bench, speedrun and ensembles, on tiny budgets.

Speed is measured by commands (`mnistlab bench`, `mnistlab speedrun`), never by tests: these
check that each piece computes the right thing, on a few thousand real MNIST images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistlab.cli import main
from mnistlab.data.augment import KINDS, augment_batch
from mnistlab.errors import UserError
from mnistlab.models import build_model
from mnistlab.train import precision
from mnistlab.train.config import TrainConfig
from mnistlab.train.device import native_bf16
from mnistlab.train.ensemble import accuracy, average_probabilities, evaluate_ensemble
from mnistlab.train.fit import fit
from mnistlab.train.presets import preset_overrides

TINY = {"limit": 2000, "test_limit": 1000, "threads": 1}


def images(n: int = 8) -> torch.Tensor:
    from mnistlab.data import load_dataset
    from mnistlab.data.batches import to_tensors

    x, y = load_dataset("mnist", "train")
    return to_tensors(np.array(x[:n]), np.array(y[:n]))[0]          # (n, 1, 28, 28)


# --- augmentation ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_augment_keeps_shape_dtype_and_range(kind: str) -> None:
    x = images()
    out = augment_batch(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1 + 1e-6                 # bilinear: a convex mix


def test_augment_is_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    x = images()
    a = augment_batch(x, "affine", torch.Generator().manual_seed(1))
    b = augment_batch(x, "affine", torch.Generator().manual_seed(1))
    c = augment_batch(x, "affine", torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_augment_none_is_identity_and_shift_moves_ink_but_keeps_most_of_it() -> None:
    x = images()
    assert augment_batch(x, "none", None) is x
    shifted = augment_batch(x, "shift", torch.Generator().manual_seed(0))
    # a shift of up to 2 px keeps the digit inside the frame: total ink barely changes
    ratio = shifted.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert torch.all((ratio > 0.85) & (ratio < 1.15))
    assert not torch.allclose(shifted, x)


def test_augment_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_batch(images(2), "flip", None)


# --- models and recipes ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["speedrun", "best"])
def test_fast_models_map_images_to_logits(name: str) -> None:
    model = build_model(name)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", ["speedrun", "best"])
def test_recipe_trains_on_a_tiny_budget(name: str) -> None:
    # 2,000 images: one epoch (16 steps) for speedrun; best's augmentation and BatchNorm
    # running statistics need a second one before its test accuracy means anything
    epochs = 1 if name == "speedrun" else 2
    overrides = preset_overrides(name, name) | TINY | {"epochs": epochs}
    result = fit(TrainConfig(model=name, preset=name, **overrides))
    m = result.metrics
    # far above chance (10%), and the loss fell below its starting value (ln 10)
    assert m.test_accuracy > 0.6
    assert m.train_loss < math.log(10)
    assert m.precision == ("bf16" if native_bf16("cpu") else "fp32")    # the presets' auto


# --- ensembles -------------------------------------------------------------------------------

def test_average_probabilities_on_known_values() -> None:
    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    b = np.array([[0.5, 0.5], [0.6, 0.4], [0.0, 1.0]])
    mean = average_probabilities([a, b])
    np.testing.assert_allclose(mean, [[0.7, 0.3], [0.4, 0.6], [0.3, 0.7]])
    # each member gets 2 of 3 right; the average gets all 3
    labels = np.array([0, 1, 1])
    assert accuracy(a, labels) == pytest.approx(2 / 3)
    assert accuracy(b, labels) == pytest.approx(2 / 3)
    assert accuracy(mean, labels) == 1.0


def test_average_probabilities_rejects_mismatched_members() -> None:
    with pytest.raises(ValueError):
        average_probabilities([np.zeros((2, 10)), np.zeros((3, 10))])
    with pytest.raises(ValueError):
        average_probabilities([])


def test_ensemble_of_two_runs(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = []
    for seed in (0, 1):
        overrides = preset_overrides("speedrun", "speedrun") | TINY | {"seed": seed}
        fit(TrainConfig(model="speedrun", **overrides), tmp_path / f"s{seed}")
        dirs.append(tmp_path / f"s{seed}")
    result = evaluate_ensemble(dirs, test_limit=1000)
    members = [m.test_accuracy for m in result.members]
    assert len(members) == 2 and result.test_images == 1000
    assert result.test_accuracy >= min(members) - 0.01         # averaging rarely hurts
    with pytest.raises(UserError):
        evaluate_ensemble(dirs[:1])
    # the CLI: `mnistlab evaluate --ensemble RUN RUN` (full test set)
    assert main(["evaluate", "--ensemble", *map(str, dirs), "--threads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["test_images"] == 10_000 and len(out["members"]) == 2
    assert list(out) == ["test_accuracy", "test_loss", "members", "dataset", "test_images",
                         "mean_member_accuracy", "protocol", "calibration", "saved"]
    assert out["calibration"] is None and out["saved"] is None    # a plain average, not saved
    assert list(out["members"][0]) == ["run_dir", "test_accuracy", "weight"]
    # trained on every image: nothing held out to choose on, so a plain average, said so
    assert out["protocol"]["selection"] == "none" and out["protocol"]["test_passes"] == 1
    assert main(["evaluate"]) == 2
    assert "--ensemble" in capsys.readouterr().err


# --- bench and speedrun ------------------------------------------------------------------------

def test_matmul_peak_and_flop_count() -> None:
    from mnistlab.perf.bench import (
        MATMUL_LIBRARIES,
        matmul_libraries,
        matmul_peak_gflops,
        training_flops_per_image,
    )

    for library in matmul_libraries(torch.float32):
        peak = matmul_peak_gflops(torch.float32, 128, 0.01, library)
        assert peak["wall"] > 0.1 and peak["cpu"] > 0.1
    # oneDNN's fp32 matmul is the one TensorFlow's and PyTorch's convolutions share
    assert ("onednn" in matmul_libraries(torch.float32)) == torch.backends.mkldnn.is_available()
    assert matmul_libraries(torch.bfloat16) == ["torch.mm"]
    a, b = torch.randn(64, 32), torch.randn(48, 32)
    assert torch.allclose(MATMUL_LIBRARIES["onednn"](a, b), a @ b.T, atol=1e-4)
    # the seed CNN: ~12.0 M multiply-adds forward = 24 MFLOP; training = 3x that, ~72 MFLOP
    flops = training_flops_per_image(build_model("cnn"))
    assert 60e6 < flops < 80e6


@pytest.mark.timeout(120)
def test_bench_quick_returns_the_row_structure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--no-keras", "--threads", "1", "--device", "cpu",
                 "--epochs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = result["rows"]
    # --epochs counts with --quick's tiny sizes too
    assert result["epochs"] == 2 and {r["epochs"] for r in rows} == {2}
    assert result["train_images"] == 512
    assert result["device"] == "cpu" and {r["device"] for r in rows} == {"cpu"}
    bf16_rows = {(m, "bf16", "autograd") for m in ("fc", "cnn")} | {
        ("cnn", "bf16", "fused"), ("cnn", "bf16", "winograd")}
    fp32_rows = {(m, "fp32", "autograd") for m in ("fc", "cnn")} | {
        ("cnn", "fp32", "fused"), ("cnn", "fp32", "winograd")}
    if native_bf16("cpu"):
        assert {(r["model"], r["precision"], r["engine"]) for r in rows} == fp32_rows | bf16_rows
        assert result["skipped"] is None and result["peak_gflops"]["bf16"] > 0
    else:   # emulated bf16: its rows and peak measure the emulation, and are left out
        assert {(r["model"], r["precision"], r["engine"]) for r in rows} == fp32_rows
        assert {tuple(s.split()) for s in result["skipped"]["rows"]} == bf16_rows
        assert result["peak_gflops"]["bf16"] is None
    for r in rows:
        assert r["framework"] == "mnistlab"
        assert r["images_per_second"] > 0 and 0 <= r["test_accuracy"] <= 1
        assert r["share_of_peak"] > 0 and r["cpu_seconds"] > 0        # load-dependent: no cap
        assert r["images_per_cpu_second"] > 0 and r["ratio_vs_keras"] is None
        # two epochs: the second one's rate; no Keras row to divide by
        assert r["steady_images_per_second"] == pytest.approx(512 / r["epoch_seconds"][1],
                                                              rel=1e-3)
        assert r["steady_ratio_vs_keras"] is None
    assert result["peak_gflops"]["fp32"] > 0
    from mnistlab.perf.bench import matmul_libraries

    by_library = result["peak_gflops_by_library"]["fp32"]
    assert set(by_library) == set(matmul_libraries(torch.float32))
    assert result["peak_gflops"]["fp32"] == pytest.approx(max(by_library.values()), abs=0.11)
    assert "cnn_speedup_vs_keras" in result             # None without the reference venv
    assert "cnn_speedup_vs_keras_steady" in result
    assert result["keras"] == "skipped: --no-keras"     # asked for, not "not found"
    assert result["cnn_fastest_engine"] in precision.CANDIDATES    # engines auto can choose,
    assert result["cnn_fastest_precision"] == result["auto_precision"]   # in auto's precision
    assert result["cpu_model"] and result["auto_engine"] in precision.CANDIDATES
    # the probe behind --engine auto (the cnn in bf16 has two candidates) or why none ran
    reason, timings = result["auto_engine_reason"], result["auto_engine_timings"]
    assert reason.startswith("probe: ") == bool(timings)
    assert not timings or min(timings, key=timings.get) == result["auto_engine"]
    assert result["isa"]["torch_capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(result["isa"]["flags"], list)


def test_speedrun_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speedrun", "--seeds", "2", "--limit", "1000", "--threads", "1",
                 "--device", "cpu", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu"
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    for s in result["seeds"]:
        assert s["train_seconds"] > 0 and 0.1 < s["test_accuracy"] <= 1
        assert s["engine"] in precision.CANDIDATES
        assert s["engine_reason"]                  # why, as config.json says: not only which
    assert result["mean_test_accuracy"] == pytest.approx(
        sum(s["test_accuracy"] for s in result["seeds"]) / 2)
    assert result["data_seconds"] >= 0
    recipe = result["recipe"]
    assert recipe["model"] == "sprint" and recipe["label_smoothing"] == 0.1
    assert (recipe["beta1"], recipe["beta2"], recipe["cycle_momentum"]) == (0.7, 0.9, False)
    # the wait covers more than the training: start, data, warm-up, evaluations
    train = sum(s["train_seconds"] for s in result["seeds"])
    assert result["wall_over_training"] * train >= train + result["warmup_seconds"] - 0.02


@pytest.mark.timeout(120)
def test_speedrun_compare_adds_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speedrun", "--compare", "--seeds", "1", "--limit", "2000",
                 "--test-limit", "500", "--threads", "1", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    rows = result["reference"]
    # bf16 where the CPU has it natively; emulated, it is said to be left out
    native = native_bf16("cpu")
    assert [r["precision"] for r in rows] == (["fp32", "bf16"] if native else ["fp32"])
    assert result["reference_left_out"] == ([] if native else ["bf16: no native bf16 on this cpu"])
    for r in rows:
        assert [run["seed"] for run in r["runs"]] == [0]
        assert r["mean_train_seconds"] > 0 and 0 < r["mean_test_accuracy"] <= 1
    faster = min(r["mean_train_seconds"] for r in rows)
    assert result["speedup_vs_reference"] == pytest.approx(
        faster / result["mean_train_seconds"], abs=5e-4)          # rounded to 3 places
    # the whole command covers at least its parts
    assert result["command_seconds"] >= result["data_seconds"] + result["warmup_seconds"]
    assert "speedup vs the reference" in out and "reference bf16" in out   # a row, or left out


def test_speedrun_rejects_zero_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["speedrun", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["bench", "--quick", "--no-keras", "--threads", "1"],
    ["speedrun", "--seeds", "1", "--limit", "1000", "--threads", "1"],
    ["speedrun", "--compare", "--seeds", "1", "--limit", "1000", "--threads", "1"],
])
def test_device_cuda_without_one_is_one_error_line_before_any_work(
        argv: list[str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("mnistlab.train.fit.fit", _no_training)
    monkeypatch.setattr("mnistlab.perf.bench.fit", _no_training)
    monkeypatch.setattr("mnistlab.perf.speedrun.fit", _no_training)
    assert main([*argv, "--device", "cuda"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert captured.out == ""


def test_speedrun_compare_trains_the_reference_on_the_same_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import mnistlab.perf.speedrun as speedrun
    from mnistlab.perf.reference import ReferenceRun, ReferenceSummary

    # as if this machine had a GPU: both recipes are asked to train there
    gpu = torch.device("cuda")
    seen: list[tuple[str, object]] = []
    metrics = SimpleNamespace(engine="autograd", train_seconds=0.5, test_accuracy=0.99,
                              test_loss=0.1, eval_seconds=0.01, images_per_second=1.0)

    def fake_fit(config, *args, **kwargs):
        seen.append(("mnistlab", config.device))
        return SimpleNamespace(metrics=metrics)

    def fake_reference(seeds, precision, *, device, **kwargs):
        seen.append((precision, device))
        return ReferenceSummary(precision, (ReferenceRun(0, precision, 2.0, 0.99),))

    monkeypatch.setattr(speedrun, "resolve_device", lambda name: gpu)
    monkeypatch.setattr(speedrun, "describe", lambda device: f"{device.type}:0 (a test GPU)")
    monkeypatch.setattr(speedrun, "load_tensors", lambda config: None)
    monkeypatch.setattr(speedrun, "fit", fake_fit)
    monkeypatch.setattr(speedrun, "run_reference", fake_reference)
    monkeypatch.setattr(speedrun, "native_bf16", lambda kind: kind == "cuda")   # a bf16 GPU
    result = speedrun.run_speedrun(1, compare=True, device="cuda", warmup=False)
    assert seen == [("mnistlab", "cuda"), ("fp32", gpu), ("bf16", gpu)]
    assert result["reference_device"] == result["device"] == "cuda:0 (a test GPU)"
    assert result["speedup_vs_reference"] == pytest.approx(4.0)


def test_the_reference_waits_for_the_device_before_reading_the_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mnistlab.perf.reference as reference

    waits: list[torch.device] = []
    monkeypatch.setattr(reference, "synchronize", waits.append)
    run = reference.train_reference(0, "fp32", limit=512, test_limit=256, device="cpu")
    assert waits == [torch.device("cpu")] * 2 and run.train_seconds > 0


def _no_training(*args, **kwargs):
    raise AssertionError("trained although the device is missing")


def test_the_steady_rate_leaves_the_first_epoch_out() -> None:
    from mnistlab.perf.bench import steady_images_per_second

    # Keras's first epoch carries its graph tracing: 40 s, then 27, 25 and 26
    assert steady_images_per_second({"epoch_seconds": [40.0, 27.0, 25.0, 26.0]}, 60000) \
        == pytest.approx(60000 / 26.0, abs=0.1)
    assert steady_images_per_second({"epoch_seconds": [40.0]}, 60000) is None
    assert steady_images_per_second({"epoch_seconds": None}, 60000) is None


def test_the_headline_is_an_engine_auto_would_train_with() -> None:
    from mnistlab.perf.bench import headline_row

    def row(precision: str, engine: str, ips: float) -> dict:
        return {"model": "cnn", "framework": "mnistlab", "precision": precision,
                "engine": engine, "images_per_second": ips, "device": "cpu"}

    rows = [row("bf16", "winograd", 1350.0), row("bf16", "fused", 1000.0),
            row("fp32", "winograd", 900.0), row("fp32", "autograd", 400.0)]
    # winograd in bf16 is asked for only: never the headline, however fast
    assert headline_row(rows, "bf16")["engine"] == "fused"
    # in fp32 it is a candidate, and the headline is in auto's precision
    assert (headline_row(rows, "fp32")["precision"], headline_row(rows, "fp32")["engine"]) \
        == ("fp32", "winograd")


def test_a_bench_row_shows_one_bar_over_its_epochs_on_a_terminal(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mnistlab import console
    from mnistlab.perf.bench_progress import RowProgress

    monkeypatch.setattr(console, "is_tty", lambda: True)
    row = RowProgress("cnn bf16 fused")
    for epoch in (1, 2):
        row.on_epoch_begin(epoch, 2, 3)
        for step in (1, 2, 3):
            row.on_step(step, 0.5, 0.9)
    assert row.bar.total == 6 and row.bar.n == 6 and row.bar.postfix == "epoch 2/2"
    row.on_train_end(None)
    assert row.bar is None                                   # closed
    assert "cnn bf16 fused" in capsys.readouterr().err       # drawn on standard error
    # a run resumed after its first epoch starts the bar there
    resumed = RowProgress("fc fp32 autograd")
    resumed.on_epoch_begin(2, 2, 3)
    assert resumed.bar.n == 3
    resumed.on_train_end(None)


def test_the_keras_rows_progress_is_read_apart_from_its_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference prints {"epoch_done": k} after each epoch for the bar; the row is its
    last JSON line, and a failure's reason its standard error's last line, as before."""
    from mnistlab import console
    from mnistlab.perf import bench

    python = tmp_path / bench.KERAS_VENV / "bin" / "python"
    python.parent.mkdir(parents=True)
    result = {"epochs": 2, "batch_size": 64, "images_per_second": 1000.0, "wall_seconds": 1.5,
              "cpu_seconds": 2.0, "epoch_seconds": [0.7, 0.8], "test_accuracy": 0.9,
              "parameters": 10, "versions": {"keras": "3"}}
    python.write_text("#!/bin/sh\n"
                      "echo 'TensorFlow chatter' >&2\n"
                      "echo '{\"epoch_done\": 1}'\necho '{\"epoch_done\": 2}'\n"
                      f"echo '{json.dumps(result)}'\n", encoding="utf-8")
    python.chmod(0o755)
    monkeypatch.setattr(console, "is_tty", lambda: True)
    advanced = []
    real = console.progress

    def watched(*args, **kwargs):
        bar = real(*args, **kwargs)
        advanced.append(bar)
        return bar

    monkeypatch.setattr(console, "progress", watched)
    size = bench.BenchSize(epochs=2, limit=512, test_limit=256)
    row = bench.bench_keras("cnn", size, tmp_path, tmp_path / "unused.npz")
    assert row["images_per_second"] == 1000.0 and row["epoch_seconds"] == [0.7, 0.8]
    assert advanced and advanced[-1].n == 2 and advanced[-1].total == 2
    python.write_text("#!/bin/sh\necho '{\"epoch_done\": 1}'\necho 'ImportError: no keras' >&2\n"
                      "exit 1\n", encoding="utf-8")
    failed = bench.bench_keras("cnn", size, tmp_path, tmp_path / "unused.npz")
    assert failed["images_per_second"] is None and failed["error"] == "ImportError: no keras"
