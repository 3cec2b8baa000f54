"""The fused step in fp32 (FusedCNN(model, precision="fp32")), what --engine auto may choose where
bf16 is not native: its kernels against PyTorch's ops, its gradients against fp32 autograd
(the same to rounding, not bf16's few percent), and training and evaluating through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.errors import UserError
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


@pytest.mark.parametrize(("name", "smoothing"), [("cnn", 0.0), ("sprint", 0.1)])
def test_step_gradients_are_fp32_autograds(name: str, smoothing: float) -> None:
    torch.manual_seed(1)
    model = build_model(name)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
    model.zero_grad()
    loss.backward()
    exact = [p.grad.clone() for p in model.parameters()]
    fused_loss, logits = FusedCNN(model, precision="fp32").step(x, y, smoothing)
    assert fused_loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert logits.dtype == torch.float32
    for (param, p), ref in zip(model.named_parameters(), exact, strict=True):
        assert _rel(p.grad, ref) < 1e-4, (param, _rel(p.grad, ref))    # bf16's: ~1e-2


def test_step_does_not_depend_on_the_thread_count() -> None:
    import numba

    model = build_model("cnn", widths=(8, 16), hidden=32)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    engine = FusedCNN(model, precision="fp32")
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


def test_unknown_precision_and_fp32_winograd_are_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        FusedCNN(build_model("sprint"), precision="fp16")
    with pytest.raises(ValueError, match="bf16 only"):
        FusedCNN(build_model("sprint"), convolution="winograd", precision="fp32")
    with pytest.raises(UserError, match=r"winograd engine trains in bf16 only.*--engine fused"):
        fit(TrainConfig(model="sprint", precision="fp32", engine="winograd", epochs=1,
                        limit=64))


def test_training_and_evaluating_through_the_fp32_step() -> None:
    from mnistlab.train.data import load_tensors
    from mnistlab.train.precision import evaluation_engine

    config = TrainConfig(model="sprint", precision="fp32", engine="fused", epochs=2,
                         limit=1536, test_limit=400, threads=1, batch_size=64, lr=5e-3,
                         eval_each_epoch=True)
    result = fit(config)
    assert result.metrics.engine == "fused" and result.metrics.precision == "fp32"
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
    assert choice.reason.startswith("probe:") and set(choice.timings) == {"fused", "autograd"}
    fit(TrainConfig(model="fc", **small), tmp_path / "fc")
    only = runs.read_config(tmp_path / "fc").engine_choice
    assert only is not None and only.engine == "autograd" and not only.timings
