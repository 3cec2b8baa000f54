"""What TrainConfig's optimizer settings do to the optimizer and schedule fit() builds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mnistlab.cli import main
from mnistlab.train import optimizers
from mnistlab.train.build import make_optimizer, make_scheduler
from mnistlab.train.config import TrainConfig
from mnistlab.train.optimizers import dense_order, dense_views


def _betas_over_a_onecycle(**settings: object) -> list[tuple[float, float]]:
    config = TrainConfig(optimizer="adam", schedule="onecycle", epochs=1, **settings)
    optimizer = make_optimizer(nn.Linear(3, 2), config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=10)
    seen = []
    for _ in range(9):
        optimizer.step()
        scheduler.step()
        seen.append(tuple(optimizer.param_groups[0]["betas"]))
    return seen


def test_adam_betas_come_from_the_config() -> None:
    optimizer = make_optimizer(nn.Linear(3, 2), TrainConfig(optimizer="adamw", beta1=0.5,
                                                               beta2=0.8))
    assert optimizer.param_groups[0]["betas"] == (0.5, 0.8)
    # no cycling: the betas stay as set while the learning rate cycles
    assert set(_betas_over_a_onecycle(beta1=0.7, beta2=0.9, cycle_momentum=False)) == {(0.7, 0.9)}


def test_onecycle_cycles_beta1_by_default_as_pytorch_does() -> None:
    beta1s = [b1 for b1, b2 in _betas_over_a_onecycle(beta1=0.7, beta2=0.9)]
    assert min(beta1s) == pytest.approx(0.85, abs=0.02) and max(beta1s) <= 0.95
    assert len(set(beta1s)) > 3


@pytest.mark.parametrize("flag", ["--beta1", "--beta2"])
def test_a_beta_of_one_is_refused_in_one_line(flag: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "fc", flag, "1", "--epochs", "1", "--limit", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and flag in err and len(err.splitlines()) == 1


def _channels_last_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(64, 128, 3), nn.Conv2d(128, 4, 3)).to(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("ours, theirs, settings", [
    (optimizers.Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.7, 0.9)}),
    (optimizers.AdamW, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
])
def test_dense_views_step_exactly_as_torch_does(ours: type, theirs: type,
                                                settings: dict[str, object]) -> None:
    nets = [_channels_last_net(), _channels_last_net()]
    steppers = [ours(nets[0].parameters(), fused=True, **settings),
                theirs(nets[1].parameters(), fused=True, **settings)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=generator) for p in nets[0].parameters()]
        for net, optimizer in zip(nets, steppers, strict=True):
            for p, g in zip(net.parameters(), grads, strict=True):
                p.grad = torch.empty_like(p).copy_(g)      # the weight's own layout
            optimizer.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
    for conv in nets[0]:                                    # still channels_last
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    # the state is keyed by the parameters, as torch's is, and its dict loads into torch's
    assert set(steppers[0].state) == set(nets[0].parameters())
    theirs(nets[1].parameters(), fused=True, **settings).load_state_dict(
        steppers[0].state_dict())


def test_a_gradient_in_another_layout_is_left_to_torch() -> None:
    nets = [_channels_last_net(), _channels_last_net()]
    steppers = [optimizers.Adam(nets[0].parameters(), lr=0.1, fused=True),
                torch.optim.Adam(nets[1].parameters(), lr=0.1, fused=True)]
    for net, optimizer in zip(nets, steppers, strict=True):
        for p in net.parameters():                          # contiguous, unlike the weight
            p.grad = torch.arange(p.numel(), dtype=torch.float32).view(p.shape) / p.numel()
        optimizer.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_dense_order() -> None:
    t = torch.zeros(2, 3, 4, 5)
    assert dense_order(t) is None
    assert dense_order(t.to(memory_format=torch.channels_last)) == (0, 2, 3, 1)
    assert dense_order(t[:, :, ::2]) is None                 # gaps: no order is dense
    big = torch.zeros(4, 64, 16, 16).to(memory_format=torch.channels_last)
    params = [big, t.to(memory_format=torch.channels_last)]
    grads = [torch.zeros_like(p) for p in params]
    steps = [torch.zeros(()), torch.zeros(())]
    dense_views(params, grads, steps, [])
    assert params[0].is_contiguous() and grads[0].is_contiguous() and steps[0].dim() == 0
    assert params[0].data_ptr() == big.data_ptr()             # a view, not a copy
    assert not params[1].is_contiguous()        # too small to pay: left to torch's copies


def _twins(ours: type, theirs: type, **settings: object) -> tuple[list[nn.Module], list]:
    nets = [_channels_last_net(), _channels_last_net()]
    return nets, [ours(nets[0].parameters(), fused=True, **settings),
                  theirs(nets[1].parameters(), fused=True, **settings)]


def _same(nets: list[nn.Module]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters(),
                                                 strict=True))


@pytest.mark.parametrize("ours, theirs", [(optimizers.Adam, torch.optim.Adam),
                                          (optimizers.AdamW, torch.optim.AdamW)])
def test_the_direct_step_follows_torch_through_what_changes_between_steps(
        ours: type, theirs: type) -> None:
    """The gathered lists are refreshed whenever a gradient, the state or a parameter's
    storage changes; the schedule's learning rate and betas are read at each step."""
    nets, steppers = _twins(ours, theirs, lr=1e-2, weight_decay=0.01)
    schedules = [torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=20)
                 for o in steppers]
    generator = torch.Generator().manual_seed(2)

    def step(skip_bias: bool = False, fresh_grads: bool = False) -> None:
        grads = [torch.randn(p.shape, generator=generator) for p in nets[0].parameters()]
        for net, optimizer, schedule in zip(nets, steppers, schedules, strict=True):
            for p, g in zip(net.parameters(), grads, strict=True):
                if skip_bias and p.dim() == 1:
                    p.grad = None
                elif p.grad is None or fresh_grads:
                    p.grad = torch.empty_like(p).copy_(g)
                else:
                    p.grad.copy_(g)                      # in place, as the fused engine does
            optimizer.step()
            schedule.step()

    for _ in range(3):
        step()
    step(skip_bias=True)                     # biases without a gradient are skipped
    step(fresh_grads=True)
    for net in nets:                         # the storage moves (as model.to(...) does)
        for p in net.parameters():
            p.data = p.data.clone(memory_format=torch.preserve_format)
    step()
    state = steppers[0].state_dict()         # a resumed run loads the state
    steppers[0].load_state_dict(state)
    step()
    assert _same(nets)
    assert steppers[0].state_dict()["state"][0]["step"] == steppers[1].state_dict()[
        "state"][0]["step"] == 7


def test_the_step_hooks_run_once_a_step_on_either_path() -> None:
    torch.optim.Adam(nn.Linear(2, 2).parameters())     # torch wraps its own class's step too
    nets, steppers = _twins(optimizers.Adam, torch.optim.Adam, lr=1e-2)
    calls: list[str] = []
    steppers[0].register_step_pre_hook(lambda *_: calls.append("pre"))
    steppers[0].register_step_post_hook(lambda *_: calls.append("post"))
    for net in nets:
        for p in net.parameters():
            p.grad = torch.ones_like(p)
    steppers[0].step()                                   # direct
    loss = steppers[0].step(lambda: torch.tensor(3.0))   # a closure: torch's own step
    steppers[1].step()
    steppers[1].step(lambda: torch.tensor(3.0))
    assert calls == ["pre", "post", "pre", "post"]
    assert float(loss) == 3.0 and _same(nets)
