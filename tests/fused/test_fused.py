"""The fused step in bf16 (mnistlab.fused): each kernel against PyTorch's own ops, the whole step's
gradients against autograd, and training through it (its fp32 form: test_fused_fp32.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import UserError
from mnistlab.fused import CONVOLUTIONS, FusedCNN, supports
from mnistlab.fused import kernels as k
from mnistlab.fused.blocks import bits
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.fit import fit

BF16 = torch.bfloat16


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous()


def test_supports_the_cnn_family_only() -> None:
    assert supports(build_model("cnn"))
    assert supports(build_model("cnn", widths=(8, 16), hidden=32))
    assert not supports(build_model("fc"))
    assert not supports(build_model("speedrun"))
    padded = build_model("cnn")
    padded[0] = nn.Conv2d(1, 64, 3, padding=1)
    assert not supports(padded)
    with pytest.raises(ValueError, match="layout"):
        FusedCNN(build_model("fc"))


@pytest.mark.parametrize("channels", [3, 5])
def test_im2col_matches_unfold(channels: int) -> None:
    h = torch.randn(3, channels, 9, 9).to(BF16)
    p = torch.empty(3, 6, 6, 9 * channels, dtype=BF16)      # the even part of a 7x7 output
    k.im2col3(bits(_nhwc(h)), bits(p))
    ref = F.unfold(h.float(), 3).view(3, channels, 9, 7, 7)[..., :6, :6]   # (B, C, k, oh, ow)
    assert torch.equal(p.float(), ref.permute(0, 3, 4, 2, 1).reshape(3, 6, 6, -1))


def test_col2im_is_the_adjoint_of_im2col() -> None:
    # <im2col(h), dp> == <h, col2im(dp)> for every h and dp: the definition of the gradient
    h = torch.randn(2, 7, 7, 4).to(BF16)
    dp = torch.randn(2, 4, 4, 36).to(BF16)
    p = torch.empty(2, 4, 4, 36, dtype=BF16)
    dh = torch.empty(2, 7, 7, 4)
    k.im2col3(bits(h), bits(p))
    k.col2im3(bits(dp), dh.numpy())
    lhs = (p.double() * dp.double()).sum()
    rhs = (h.double() * dh.double()).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-5)
    assert dh[:, 6].abs().sum() == 0                        # rows no window reached: no gradient


def test_pool_relu_forward_and_backward_match_autograd() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 6, 10, 10).to(BF16).float().requires_grad_()   # bf16-exact values
    ref = F.max_pool2d(F.relu(z), 2)
    g = torch.randn_like(ref).to(BF16).float()                          # bf16-exact gradient
    ref.backward(g)

    out = torch.empty(4, 5, 5, 6, dtype=BF16)
    arg = torch.empty(4, 5, 5, 6, dtype=torch.int8)
    k.pool_relu_forward(bits(_nhwc(z.detach()).to(BF16)), bits(out), arg.numpy())
    assert torch.equal(out.float(), _nhwc(ref.detach()))
    assert ((arg >= 0) == (_nhwc(ref.detach()) > 0)).all()

    dz = torch.empty(4, 10, 10, 6, dtype=BF16)
    dbias = torch.empty(4, 6)
    k.pool_relu_backward(_nhwc(g).numpy(), arg.numpy(), bits(dz), dbias.numpy())
    assert torch.equal(dz.float(), _nhwc(z.grad))
    assert torch.allclose(dbias.sum(0), z.grad.sum((0, 2, 3)), atol=1e-4)


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, smoothing: float,
           dtype: torch.dtype | None) -> tuple[float, list[torch.Tensor]]:
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
    model.zero_grad()
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(("widths", "smoothing", "channels_last"), [
    ((64, 128, 256), 0.0, True),         # the seed CNN, as training prepares it
    ((64, 128, 256), 0.1, False),
    ((8, 16), 0.0, False),               # two blocks: 28 -> 13 -> 5, a 5x5x16 flatten
])
def test_step_gradients_are_as_close_to_fp32_as_autocast(
        widths: tuple[int, ...], smoothing: float, channels_last: bool) -> None:
    torch.manual_seed(1)
    model = build_model("cnn", widths=widths, hidden=64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    exact_loss, exact = _grads(model, x, y, smoothing, None)              # fp32 autograd
    _, autocast = _grads(model, x, y, smoothing, BF16)                   # PyTorch's bf16
    loss, logits = FusedCNN(model).step(x, y, smoothing)
    assert loss.item() == pytest.approx(exact_loss, abs=1e-2)
    assert logits.shape == (32, 10) and logits.dtype == torch.float32
    for (name, p), ref, amp in zip(model.named_parameters(), exact, autocast, strict=True):
        # bf16 rounding moves gradients by a few percent (up to ~10% where max-pool windows
        # hold near-ties, as at initialisation); a wrong gradient is off by ~100%
        assert _rel(p.grad, ref) <= max(2 * _rel(amp, ref), 0.05), (name, _rel(p.grad, ref))


def test_first_block_kernels_match_fp32_autograd() -> None:
    torch.manual_seed(2)
    x = torch.rand(3, 1, 28, 28)
    conv = nn.Conv2d(1, 16, 3)
    ref = F.max_pool2d(F.relu(conv(x)), 2)                                # (3, 16, 13, 13)
    g = torch.randn_like(ref)
    ref.backward(g)
    out = torch.empty(3, 13, 13, 16, dtype=BF16)
    arg = torch.empty(3, 13, 13, 16, dtype=torch.int8)
    w = conv.weight.detach().reshape(16, 9).t().contiguous()
    images = x.reshape(3, 28, 28)
    k.first_block_forward(images.numpy(), w.numpy(), conv.bias.detach().numpy(), bits(out),
                          arg.numpy())
    assert torch.allclose(out.float(), _nhwc(ref.detach()), rtol=1 / 128, atol=1e-6)  # bf16
    dw, db = torch.empty(3, 9, 16), torch.empty(3, 16)
    k.first_block_backward(images.numpy(), _nhwc(g).numpy(), arg.numpy(), dw.numpy(), db.numpy())
    assert torch.allclose(dw.sum(0).t().reshape(16, 1, 3, 3), conv.weight.grad, atol=1e-4)
    assert torch.allclose(db.sum(0), conv.bias.grad, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("convolution", CONVOLUTIONS)
def test_step_does_not_depend_on_the_thread_count(convolution: str, precision: str) -> None:
    import numba

    model = build_model("cnn")
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    engine = FusedCNN(model, convolution=convolution, precision=precision)
    before = numba.get_num_threads()
    grads = []
    try:
        for n in sorted({1, before}):
            numba.set_num_threads(n)
            engine.step(x, y)
            grads.append([p.grad.clone() for p in model.parameters()])
    finally:
        numba.set_num_threads(before)
    for a, b in zip(grads[0], grads[-1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("engine", ["fused", "winograd"])
def test_training_through_a_fused_engine(engine: str) -> None:
    config = TrainConfig(model="cnn", precision="bf16", engine=engine, epochs=2, limit=1024,
                         test_limit=500, threads=1, eval_each_epoch=True)
    result = fit(config)
    assert result.metrics.engine == engine
    assert result.history[1].train_loss < result.history[0].train_loss
    assert result.metrics.test_accuracy > 0.6


def test_auto_picks_the_fused_engine_for_the_cnn_in_bf16() -> None:
    auto = fit(TrainConfig(model="cnn", precision="bf16", epochs=1, limit=64, test_limit=64,
                           threads=1))
    assert auto.metrics.engine == "fused"                # auto picks it for the cnn in bf16


@pytest.mark.parametrize(("model", "precision", "engine"),
                         [("fc", "bf16", "fused"), ("fc", "fp32", "winograd")])
def test_fused_engine_refuses_what_it_cannot_train(model: str, precision: str,
                                                   engine: str) -> None:
    with pytest.raises(UserError, match=f"{engine} engine"):
        fit(TrainConfig(model=model, precision=precision, engine=engine, epochs=1, limit=64))


def test_unknown_engine_is_a_user_error() -> None:
    with pytest.raises(UserError,
                       match="engine must be one of: auto, fused, winograd, autograd, "
                             "channels-last; got 'jit'"):
        fit(TrainConfig(model="cnn", engine="jit", epochs=1, limit=64))


def test_kernels_leave_no_uninitialised_output() -> None:
    # every output element is written: NaN-filled buffers come back finite
    h = torch.randn(2, 5, 5, 3).to(BF16)
    p = torch.full((2, 2, 2, 27), float("nan"), dtype=BF16)
    k.im2col3(bits(h), bits(p))
    dz = torch.full((2, 4, 4, 3), float("nan"), dtype=BF16)
    g = torch.randn(2, 2, 2, 3)
    arg = torch.from_numpy(np.random.default_rng(0).integers(-1, 4, (2, 2, 2, 3), dtype=np.int8))
    k.pool_relu_backward(g.numpy(), arg.numpy(), bits(dz), np.empty((2, 3), np.float32))
    assert torch.isfinite(p.float()).all() and torch.isfinite(dz.float()).all()


def test_gradients_round_to_bf16_like_torch() -> None:
    # float32 gradients narrowed to bf16 in the kernel: nearest, ties to even, as Tensor.to
    g = torch.randn(2, 3, 3, 8) * torch.logspace(-6, 6, 8)        # many exponents
    g[0, 0, 0, :4] = torch.tensor([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 2**-130])  # ties, tiny
    arg = torch.zeros(2, 3, 3, 8, dtype=torch.int8)                # window corner 0 wins
    dz = torch.empty(2, 6, 6, 8, dtype=BF16)
    k.pool_relu_backward(g.numpy(), arg.numpy(), bits(dz), np.empty((2, 8), np.float32))
    assert torch.equal(dz[:, 0::2, 0::2].view(torch.int16), g.to(BF16).view(torch.int16))
    assert dz[:, 1::2].float().abs().sum() == 0


def test_logits_are_the_steps_forward_and_close_to_autocast() -> None:
    torch.manual_seed(0)
    model = build_model("sprint")
    assert supports(model)                          # the speedrun's model trains fused
    engine = FusedCNN(model)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    logits = engine.logits(x)
    _, step_logits = engine.step(x, y)
    assert logits.dtype == torch.float32 and torch.equal(logits, step_logits)
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        ref = model(x).float()
    assert (logits - ref).abs().max() < 0.05 * ref.abs().max()


def test_bf16_evaluation_of_the_cnn_family_is_the_fused_forward() -> None:
    from mnistlab.train.data import load_tensors
    from mnistlab.train.phases import evaluate
    from mnistlab.train.precision import evaluation_engine

    config = TrainConfig(model="sprint", precision="bf16", engine="autograd", epochs=1,
                         limit=1536, test_limit=400, threads=1, batch_size=64, lr=5e-3)
    result = fit(config)                                   # trained without the fused step
    model = result.model
    engine = evaluation_engine(model, "bf16")
    assert engine is not None and evaluation_engine(model, "bf16") is engine   # one per model
    fp32 = evaluation_engine(model, "fp32")                 # and precision
    assert fp32 is not None and fp32 is not engine and fp32.precision == "fp32"
    assert evaluation_engine(model, "bf16") is engine
    assert evaluation_engine(model, "bf16", "cuda") is None
    assert evaluation_engine(build_model("speedrun"), "bf16") is None
    _, _, x, y = load_tensors(config)
    # what fit recorded is what the fused forward gives, and what evaluating again gives
    fused_accuracy = (engine.logits(x).argmax(1) == y).float().mean().item()
    assert result.metrics.test_accuracy == pytest.approx(fused_accuracy)
    again = evaluate(model, x, y, batch_size=100, precision="bf16")
    assert again["test_accuracy"] == pytest.approx(fused_accuracy)
    # and it is within an image or two of the model's own forward under autocast
    with torch.inference_mode(), torch.autocast("cpu", dtype=BF16):
        autocast_accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert abs(autocast_accuracy - fused_accuracy) <= 2 / len(y)
    assert fused_accuracy > 0.6


def test_weight_gradient_parts_follow_threads_and_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.fused import blocks
    from mnistlab.threads import torch_threads

    with torch_threads(2):
        assert blocks.weight_gradient_parts(19_200) == 2            # sprint's block 2, batch 192
        assert blocks.weight_gradient_parts(256) == 1               # the seed CNN's block 3
        assert blocks.weight_gradient_parts(4 * blocks.MIN_ROWS_PER_PART - 1) == 1  # odd rows
    with torch_threads(1):
        assert blocks.weight_gradient_parts(19_200) == 1


def test_a_split_weight_gradient_is_the_same_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.fused import blocks
    from mnistlab.threads import torch_threads

    torch.manual_seed(3)
    model = build_model("cnn", widths=(8, 16), hidden=32)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    exact = _grads(model, x, y, 0.0, None)[1]
    engine = FusedCNN(model)
    engine.warm_up()                   # Numba's first launch may reset torch's thread count
    monkeypatch.setattr(blocks, "MIN_ROWS_PER_PART", 1)
    grads = []
    for threads in (1, 2):                                          # one part, then two
        with torch_threads(threads):
            assert blocks.weight_gradient_parts(16 * 10 * 10) == threads
            engine.step(x, y)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    one, two = grads
    split = "3.weight"                                              # block 2's conv weight
    assert not torch.equal(one[split], two[split])                  # it did take the other path
    assert _rel(two[split], one[split]) < 0.01                      # the same sum, rounded apart
    assert _rel(two[split], exact[2]) < 0.05                       # and close to float32
    for name in one:                                                # nothing else moved
        if name != split:
            assert torch.equal(one[name], two[name]), name


def test_warm_up_keeps_torchs_thread_count() -> None:
    # in a fresh process: Numba's first parallel launch, inside warm_up, starts its OpenMP pool
    import subprocess
    import sys

    code = ("import torch\n"
            "from mnistlab.fused import FusedCNN\n"
            "from mnistlab.models import build_model\n"
            "torch.set_num_threads(1)\n"
            "FusedCNN(build_model('cnn', widths=(4, 8), hidden=8)).warm_up()\n"
            "print(torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.split()[-1] == "1"
