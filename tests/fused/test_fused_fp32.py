"""The fused step in fp32 (FusedCNN(model, precision="fp32")), what --engine auto may choose where
bf16 is not native: its kernels against PyTorch's ops, its gradients against fp32 autograd
(the same to rounding, not bf16's few percent), and training and evaluating through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.fused import FusedCNN
from mnistlab.fused import kernels as k
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.fit import fit


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1).contiguous()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_pool_relu_forward_and_backward_match_autograd() -> None:
    torch.manual_seed(0)
    z = torch.randn(4, 6, 10, 10, requires_grad=True)
    ref = F.max_pool2d(F.relu(z), 2)
    g = torch.randn_like(ref)
    ref.backward(g)
    out = torch.full((4, 5, 5, 6), float("nan"))
    arg = torch.empty(4, 5, 5, 6, dtype=torch.int8)
    k.pool_relu_forward_f32(_nhwc(z.detach()).numpy(), out.numpy(), arg.numpy())
    assert torch.equal(out, _nhwc(ref.detach()))
    assert ((arg >= 0) == (_nhwc(ref.detach()) > 0)).all()
    dz = torch.full((4, 10, 10, 6), float("nan"))
    dbias = torch.empty(4, 6)
    k.pool_relu_backward_f32(_nhwc(g).numpy(), arg.numpy(), dz.numpy(), dbias.numpy())
    assert torch.equal(dz, _nhwc(z.grad))                    # every element written
    assert torch.allclose(dbias.sum(0), z.grad.sum((0, 2, 3)), atol=1e-5)


def test_col2im_is_the_adjoint_of_im2col() -> None:
    h, dp = torch.randn(2, 7, 7, 4), torch.randn(2, 4, 4, 36)
    p, dh = torch.empty(2, 4, 4, 36), torch.full((2, 7, 7, 4), float("nan"))
    k.im2col3(h.numpy(), p.numpy())                          # the copy reads either dtype
    k.col2im3_f32(dp.numpy(), dh.numpy())
    lhs = (p.double() * dp.double()).sum()
    rhs = (h.double() * dh.double()).sum()
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-6)
    assert dh[:, 6].abs().sum() == 0


def test_first_block_forward_matches_autograd() -> None:
    torch.manual_seed(2)
    x = torch.rand(3, 1, 28, 28)
    conv = nn.Conv2d(1, 16, 3)
    ref = F.max_pool2d(F.relu(conv(x)), 2).detach()
    out = torch.empty(3, 13, 13, 16)
    arg = torch.empty(3, 13, 13, 16, dtype=torch.int8)
    w = conv.weight.detach().reshape(16, 9).t().contiguous()
    k.first_block_forward_f32(x.reshape(3, 28, 28).numpy(), w.numpy(),
                              conv.bias.detach().numpy(), out.numpy(), arg.numpy())
    assert torch.allclose(out, _nhwc(ref), atol=1e-6)


@pytest.mark.parametrize(("name", "smoothing", "convolution"), [
    ("cnn", 0.0, "im2col"), ("sprint", 0.1, "im2col"),
    ("cnn", 0.1, "winograd"), ("sprint", 0.0, "winograd")])
def test_step_gradients_are_fp32_autograds(name: str, smoothing: float,
                                           convolution: str) -> None:
    torch.manual_seed(1)
    model = build_model(name)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
    model.zero_grad()
    loss.backward()
    exact = [p.grad.clone() for p in model.parameters()]
    engine = FusedCNN(model, convolution=convolution, precision="fp32")
    fused_loss, logits = engine.step(x, y, smoothing)
    assert fused_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert logits.dtype == torch.float32
    for (param, p), ref in zip(model.named_parameters(), exact, strict=True):
        # bf16's: ~1e-2 for im2col, up to 0.25 for Winograd's transforms
        assert _rel(p.grad, ref) < 1e-4, (param, _rel(p.grad, ref))


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        FusedCNN(build_model("sprint"), precision="fp16")


@pytest.mark.parametrize("engine_name", ["fused", "winograd"])
def test_training_and_evaluating_through_the_fp32_step(engine_name: str) -> None:
    from mnistlab.train.data import load_tensors
    from mnistlab.train.precision import evaluation_engine

    config = TrainConfig(model="sprint", precision="fp32", engine=engine_name, epochs=2,
                         limit=1536, test_limit=400, threads=1, batch_size=64, lr=5e-3,
                         eval_each_epoch=True)
    result = fit(config)
    assert result.metrics.engine == engine_name and result.metrics.precision == "fp32"
    assert result.history[1].train_loss < result.history[0].train_loss
    assert result.metrics.test_accuracy > 0.6
    # evaluated through the fused fp32 forward, which is the model's own to rounding
    engine = evaluation_engine(result.model, "fp32")
    assert engine is not None and engine.precision == "fp32"
    x = load_tensors(config)[2]
    with torch.inference_mode():
        ref = result.model(x)
    logits = engine.logits(x)
    assert (logits - ref).abs().max() < 1e-4
    assert np.array_equal(logits.argmax(1).numpy(), ref.argmax(1).numpy())


def test_auto_measures_the_fp32_step_against_autograd_for_the_cnn_family(tmp_path) -> None:
    from mnistlab import runs

    small = dict(precision="fp32", epochs=1, limit=64, test_limit=64, threads=1)
    auto = fit(TrainConfig(model="sprint", **small), tmp_path / "sprint")
    choice = runs.read_config(tmp_path / "sprint").engine_choice
    assert choice is not None and auto.metrics.engine == choice.engine
    assert choice.reason.startswith("probe:")
    assert set(choice.timings) == {"fused", "winograd", "autograd", "channels-last"}
    fit(TrainConfig(model="fc", **small), tmp_path / "fc")
    only = runs.read_config(tmp_path / "fc").engine_choice
    assert only is not None and only.engine == "autograd" and not only.timings


# Winograd F(2x2, 3x3) in float32: the same kernels, compiled for float32 operands
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)


def _integers(*shape: int, seed: int = 0) -> torch.Tensor:
    """Small integers: every sum the transforms make is exact, so equality can be asked."""
    return torch.randint(-3, 4, shape, generator=torch.Generator().manual_seed(seed)).float()


@pytest.mark.parametrize(("forward", "backward", "shape", "shape_t"), [
    ("input_transform", "input_backward", (2, 9, 9, 3), (16, 2, 3, 3, 3)),
    ("weight_transform", "weight_gradient", (4, 3, 3, 5), (16, 4, 5)),
])
def test_winograd_transforms_and_their_adjoints_in_float32(forward: str, backward: str,
                                                           shape: tuple[int, ...],
                                                           shape_t: tuple[int, ...]) -> None:
    from mnistlab.fused import winograd as w

    x, dy = _integers(*shape, seed=1), _integers(*shape_t, seed=2) / 2
    y, dx = torch.full(shape_t, float("nan")), torch.full(shape, float("nan"))
    getattr(w, forward)(x.numpy(), y.numpy())
    getattr(w, backward)(dy.numpy(), dx.numpy())
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    assert (y.double() * dy.double()).sum() == (x.double() * dx.double()).sum()


def test_winograd_output_backward_in_float32_is_a_dy_at() -> None:
    from mnistlab.fused import winograd as w

    g = torch.randn(2, 3, 3, 4)
    arg = torch.from_numpy(np.random.default_rng(0).integers(-1, 4, (2, 3, 3, 4), dtype=np.int8))
    dm = torch.full((16, 2, 3, 3, 4), float("nan"))
    dbias = torch.empty(2, 4)
    w.output_backward_f32(g.numpy(), arg.numpy(), dm.numpy(), dbias.numpy())
    dy = torch.zeros(2, 3, 3, 4, 2, 2, dtype=torch.float64)      # g at the winner, else 0
    for a in range(4):
        dy[..., a // 2, a % 2] = torch.where(arg == a, g.double(), 0.0)
    ref = AT.T @ dy @ AT
    assert torch.equal(dm.double(), ref.permute(4, 5, 0, 1, 2, 3).reshape(16, 2, 3, 3, 4))
    assert torch.allclose(dbias, torch.where(arg >= 0, g, 0.0).sum((1, 2)))


@pytest.mark.parametrize("side", [13, 5])
def test_both_blocks_in_float32_are_conv_relu_pool(side: int) -> None:
    from mnistlab.fused.blocks import Im2colBlock, WinogradBlock

    torch.manual_seed(3)
    conv = nn.Conv2d(8, 16, 3)
    h = torch.randn(3, side, side, 8)
    ref = F.max_pool2d(F.relu(conv(h.permute(0, 3, 1, 2))), 2).permute(0, 2, 3, 1)
    with torch.no_grad():
        for block in (Im2colBlock(conv, dtype=torch.float32),
                      WinogradBlock(conv, dtype=torch.float32)):
            out = block.forward(h)
            assert out.dtype == torch.float32
            assert (out - ref).abs().max() < 1e-5 * ref.abs().max(), type(block).__name__
