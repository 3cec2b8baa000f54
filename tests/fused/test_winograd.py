"""Winograd F(2x2, 3x3) in the fused step (mnistlab.fused.winograd, blocks.WinogradBlock): each
transform against its definition and its adjoint, a block against conv + ReLU + pool, the step's
gradients against float32 autograd (test_fused.py trains through the ``winograd`` engine and
checks that a step does not depend on the thread count, for both convolutions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import UserError
from mnistlab.fused import FusedCNN
from mnistlab.fused import winograd as w
from mnistlab.fused.blocks import Im2colBlock, WinogradBlock, bits, make_block
from mnistlab.models import build_model
from mnistlab.train.config import TrainConfig
from mnistlab.train.fit import fit

BF16 = torch.bfloat16
# Lavin and Gray's F(2x2, 3x3) matrices
BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)


def _integers(*shape: int, high: int = 3, seed: int = 0) -> torch.Tensor:
    """Small integers: every sum the transforms make is exact in bf16 and float32, so the
    kernels can be held to exact equality with the definitions."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-high, high + 1, shape, generator=g).float()


def test_input_transform_is_bt_d_b_per_tile() -> None:
    h = _integers(2, 9, 9, 3)                                     # 3x3 tiles of 4x4, stride 2
    v = torch.empty(16, 2, 3, 3, 3, dtype=BF16)
    w.input_transform(bits(h.to(BF16)), bits(v))
    patches = h.double().unfold(1, 4, 2).unfold(2, 4, 2)         # (B, T, T, C, 4, 4)
    ref = BT @ patches @ BT.T
    assert torch.equal(v.double(), ref.permute(4, 5, 0, 1, 2, 3).reshape(16, 2, 3, 3, 3))


def test_weight_transform_is_g_g_gt() -> None:
    weight = _integers(4, 3, 3, 5) / 2                            # (O, 3, 3, I)
    u = torch.empty(16, 4, 5, dtype=BF16)
    w.weight_transform(weight.numpy(), bits(u))
    ref = G @ weight.double().permute(0, 3, 1, 2) @ G.T           # (O, I, 4, 4)
    assert torch.equal(u.double(), ref.permute(2, 3, 0, 1).reshape(16, 4, 5))


@pytest.mark.parametrize(("forward", "backward", "shape", "shape_t"), [
    (w.input_transform, w.input_backward, (2, 9, 9, 3), (16, 2, 3, 3, 3)),
    (w.weight_transform, w.weight_gradient, (4, 3, 3, 5), (16, 4, 5)),
])
def test_each_backward_is_the_adjoint_of_its_transform(forward, backward, shape, shape_t) -> None:
    # <T(x), dy> == <x, T*(dy)> for every x and dy: the definition of the gradient (exact here)
    x, dy = _integers(*shape, seed=1), _integers(*shape_t, seed=2)
    y, dx = torch.empty(shape_t, dtype=BF16), torch.empty(shape)
    bf16_input = forward is w.input_transform                     # h is bf16, w is float32
    forward((bits(x.to(BF16)) if bf16_input else x.numpy()), bits(y))
    backward(bits(dy.to(BF16)), dx.numpy())
    assert (y.double() * dy.double()).sum() == (x.double() * dx.double()).sum()


def test_output_backward_is_a_dy_at_at_the_winner() -> None:
    g = torch.randn(2, 3, 3, 4).to(BF16).float()                  # bf16-exact gradient
    arg = torch.from_numpy(np.random.default_rng(0).integers(-1, 4, (2, 3, 3, 4), dtype=np.int8))
    dm = torch.full((16, 2, 3, 3, 4), float("nan"), dtype=BF16)
    dbias = torch.empty(2, 4)
    w.output_backward(g.numpy(), arg.numpy(), bits(dm), dbias.numpy())
    dy = torch.zeros(2, 3, 3, 4, 2, 2, dtype=torch.float64)      # g at the winner, else 0
    for a in range(4):
        dy[..., a // 2, a % 2] = torch.where(arg == a, g.double(), 0.0)
    ref = AT.T @ dy @ AT                                          # (B, T, T, O, 4, 4)
    assert torch.equal(dm.double(), ref.permute(4, 5, 0, 1, 2, 3).reshape(16, 2, 3, 3, 4))
    assert torch.allclose(dbias, torch.where(arg >= 0, g, 0.0).sum((1, 2)))


@pytest.mark.parametrize("side", [13, 12, 5])                      # 5x5 tiles, 5x5, 1x1
def test_a_winograd_block_is_conv_relu_pool(side: int) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(8, 16, 3)
    h = torch.randn(3, side, side, 8).to(BF16)
    ref = F.max_pool2d(F.relu(conv(h.permute(0, 3, 1, 2).float())), 2).permute(0, 2, 3, 1)
    with torch.no_grad():
        outs = {type(b).__name__: b.forward(h).float() for b in (Im2colBlock(conv),
                                                                  WinogradBlock(conv))}
    scale = ref.abs().max()
    im2col_error = (outs["Im2colBlock"] - ref).abs().max() / scale
    winograd_error = (outs["WinogradBlock"] - ref).abs().max() / scale
    # bf16 operands: a few parts in a thousand; Winograd rounds its transforms too
    assert im2col_error < 0.01 and winograd_error < 0.03


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           dtype: torch.dtype | None) -> tuple[float, list[torch.Tensor]]:
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = F.cross_entropy(model(x), y)
    model.zero_grad()
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_winograd_step_gradients_are_near_fp32(seed: int) -> None:
    # Over 8 seeds of this set-up at initialisation, where max-pool windows hold near-ties,
    # autocast's gradients were 0.1-15% from float32's and the Winograd step's 0.1-16%; a wrong
    # gradient (a transposed transform, a lost sign) is off by 50-150%.
    torch.manual_seed(seed)
    model = build_model("cnn", hidden=64).to(memory_format=torch.channels_last)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    exact_loss, exact = _grads(model, x, y, None)
    loss, _ = FusedCNN(model, convolution="winograd").step(x, y)
    assert loss.item() == pytest.approx(exact_loss, abs=1e-2)
    for (name, p), ref in zip(model.named_parameters(), exact, strict=True):
        assert ((p.grad - ref).norm() / ref.norm()).item() < 0.25, name


def test_the_winograd_engine_refuses_what_it_cannot_train() -> None:
    with pytest.raises(UserError, match="winograd engine"):
        fit(TrainConfig(model="fc", precision="bf16", engine="winograd", epochs=1, limit=64))
    with pytest.raises(ValueError, match="convolution"):
        make_block(nn.Conv2d(1, 2, 3), "fft")
