"""`mnistlab profile`: the fused step's parts, timed by its own timers, on a few tiny steps."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.fused import FusedCNN
from mnistlab.fused.timing import UNTIMED, PartTimer
from mnistlab.models import build_model
from mnistlab.perf.profile import OPTIMIZER, OTHER, profile_step
from mnistlab.train.device import native_bf16


def test_profile_names_every_part_of_the_step_once_a_step() -> None:
    p = profile_step("cnn", batch_size=8, steps=6, threads=1, peak_seconds=0.05)
    by_name = {part.name: part for part in p.parts}
    for block in ("block 2", "block 3"):
        for part in ("im2col", "forward matmul", "pool + ReLU", "pool + ReLU backward",
                     "weight-gradient matmul", "input-gradient matmul", "col2im"):
            assert by_name[f"{block}: {part}"].calls_per_step == 1
    assert by_name["block 1: conv + pool + ReLU"].calls_per_step == 1
    assert by_name["dense: forward matmuls"].calls_per_step == 2
    assert by_name["dense: backward matmuls"].calls_per_step == 4
    assert by_name[OPTIMIZER].calls_per_step == 1
    assert p.parts[-1].name == OTHER
    timed = [part.ms_per_step for part in p.parts[:-1]]
    assert timed == sorted(timed, reverse=True) and min(timed) > 0
    # the parts and "other" make up the timed step; the groups add up the same way
    assert sum(part.ms_per_step for part in p.parts) == pytest.approx(p.ms_per_step_timed,
                                                                      rel=1e-3)
    assert sum(p.groups.values()) == pytest.approx(p.ms_per_step_timed, rel=1e-3)
    assert p.groups["optimizer"] == by_name[OPTIMIZER].ms_per_step
    assert (p.model, p.preset, p.batch_size, p.threads, p.steps) == ("cnn", "seed", 8, 1, 6)
    assert p.images_per_second == pytest.approx(8 / p.ms_per_step * 1e3, rel=1e-2)
    # matmuls carry their rate, counted from their shapes; the rest none
    forward = by_name["block 2: forward matmul"]
    flops = 2 * (8 * 10 * 10) * (9 * 64) * 128          # (B*10*10, 9*64) @ (9*64, 128)
    assert forward.gflops == pytest.approx(flops / (forward.ms_per_step / 1e3) / 1e9, rel=0.02)
    assert by_name["block 2: col2im"].gflops is None and by_name[OPTIMIZER].gflops is None
    assert p.matmul_gflops > 0
    # auto's precision: bf16 where native, else fp32, each against its own matmul peak
    assert p.precision == ("bf16" if native_bf16("cpu") else "fp32")
    assert p.peak_gflops > 0
    assert p.peak_gflops_bf16 == (p.peak_gflops if p.precision == "bf16" else None)
    assert forward.share_of_peak == pytest.approx(forward.gflops / p.peak_gflops, rel=0.02)


def test_emulated_bf16_has_no_peak_to_share(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.perf import profile

    monkeypatch.setattr(profile, "native_bf16", lambda device: False)
    p = profile_step("cnn", batch_size=4, steps=3, threads=1, peak_seconds=0.05,
                     precision="bf16")
    assert p.precision == "bf16" and p.peak_gflops is None and p.peak_gflops_bf16 is None
    assert all(part.share_of_peak is None for part in p.parts)
    assert profile_step("cnn", batch_size=4, steps=3, threads=1, peak_seconds=0).precision \
        == "fp32"                      # auto where bf16 is not native


def test_profile_of_the_winograd_step_and_the_speedrun_preset() -> None:
    p = profile_step("sprint", engine="winograd", batch_size=4, steps=3, threads=1,
                     peak_seconds=0)
    names = {part.name for part in p.parts}
    assert {"block 2: input transform", "block 2: forward matmuls",
            "block 2: output transform + pool + ReLU"} <= names
    assert p.preset == "speedrun" and p.engine == "winograd"
    assert p.peak_gflops_bf16 is None
    assert all(part.share_of_peak is None for part in p.parts)
    assert by_rate(p, "block 2: forward matmuls") > 0         # bmm: 16 products counted


def by_rate(p, name: str) -> float:
    return next(part.gflops for part in p.parts if part.name == name)


@pytest.mark.parametrize(("model", "engine"), [("fc", "fused"), ("cnn", "autograd")])
def test_profile_refuses_what_the_fused_step_cannot_train(model: str, engine: str) -> None:
    with pytest.raises(UserError):
        profile_step(model, engine=engine, batch_size=4, steps=3, threads=1, peak_seconds=0)


def test_timers_leave_the_step_unchanged() -> None:
    torch.manual_seed(0)
    model = build_model("cnn", widths=(8, 16), hidden=16)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    engine = FusedCNN(model)
    engine.step(x, y)
    plain = [p.grad.clone() for p in model.parameters()]
    timer = PartTimer()
    engine.time_with(timer)
    assert all(block.timer is timer for block in engine.blocks)
    engine.step(x, y)
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, model.parameters(), strict=True))
    assert timer.calls["block 2: forward matmul"] == 1
    engine.time_with(None)
    assert engine.timer is UNTIMED and all(block.timer is UNTIMED for block in engine.blocks)


def test_profile_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "sprint", "--batch-size", "4", "--steps", "3", "--threads", "1",
                 "--no-peak", "--json"]) == 0
    out = capsys.readouterr().out
    assert "block 2: weight-gradient matmul" in out and "by kind:" in out
    result = json.loads(out.strip().splitlines()[-1])
    assert result["model"] == "sprint" and result["batch_size"] == 4
    assert result["parts"][-1]["name"] == OTHER
    assert set(result["groups"]) == {"matmuls", "Numba kernels", "optimizer", "other"}
    assert result["peak_gflops_bf16"] is None and "no peak measured" in out


def test_profile_command_refuses_a_model_outside_the_family(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "fc", "--steps", "3"]) == 2
    assert "cnn family" in capsys.readouterr().err
