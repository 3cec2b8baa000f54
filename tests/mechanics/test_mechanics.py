"""Training mechanics: the hand-written backward pass proved, the explicit loop checked.

Levels: reference equivalence (NumPy backward vs torch autograd and finite differences; the
explicit loop vs torch.optim.SGD; one NumPy SGD step vs one torch step), a deliberately broken
gradient that must be caught, small real-data runs, and the files a run leaves behind.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mnistlab.cli import main
from mnistlab.mechanics import bridge as B
from mnistlab.mechanics import gradcheck as G
from mnistlab.mechanics import numpy_net as N
from mnistlab.mechanics.curve import ema, plot_loss_curve, read_loss_csv
from mnistlab.mechanics.loop import batch_stream, train_loop
from mnistlab.mechanics.scratch import ScratchConfig, load_flat, train_scratch
from mnistlab.models import build_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch and one BLAS thread: small matrices on a shared 2-core machine run fastest."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch64():
    """The first 32 training images in float64, (32, 784), and their labels."""
    return load_flat("mnist", "train", 32, dtype=np.float64)


@pytest.fixture(scope="module")
def train_subset():
    """The first 2,000 training images as tensors (2000, 1, 28, 28) and int64 labels."""
    from mnistlab.train.config import TrainConfig
    from mnistlab.train.data import load_tensors

    x, y, _, _ = load_tensors(TrainConfig(limit=2000))
    return x, y


# --- the NumPy network and its gradient check ------------------------------------------------

def test_gradcheck_passes(batch64):
    x, y = batch64
    r = G.gradcheck(x, y, seed=0)
    assert r.max_rel_error_autograd < 1e-7
    assert r.max_rel_error_finite_diff < 1e-5
    assert r.passed
    assert r.loss_numpy == pytest.approx(r.loss_torch, rel=1e-12)
    assert set(r.per_param_autograd) == {"W1", "b1", "W2", "b2"}


@pytest.mark.parametrize("breakage", ["scale_W1", "no_relu_mask", "drop_b2"])
def test_gradcheck_catches_a_broken_backward(batch64, monkeypatch, breakage):
    x, y = batch64
    good_backward = N.backward

    def broken(params, cache, dlogits):
        if breakage == "no_relu_mask":          # forget that ReLU blocks negative inputs
            xin, h, a = cache
            grads = good_backward(params, (xin, np.abs(h) + 1e-3, a), dlogits)
        else:
            grads = good_backward(params, cache, dlogits)
        if breakage == "scale_W1":              # off by 0.1% in one tensor
            grads["W1"] = grads["W1"] * 1.001
        if breakage == "drop_b2":
            grads["b2"] = np.zeros_like(grads["b2"])
        return grads

    monkeypatch.setattr(N, "backward", broken)
    r = G.gradcheck(x, y, seed=0)
    assert not r.autograd_ok and not r.passed
    assert r.max_rel_error_autograd > 1e-4


def test_gradcheck_cli_exit_codes(monkeypatch, capsys):
    assert main(["gradcheck", "--batch-size", "8", "--samples", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["max_rel_error_autograd"] < 1e-7 and out["max_rel_error_finite_diff"] < 1e-5
    # a huge step fails the finite differences, not the backward: the output says which
    assert main(["gradcheck", "--batch-size", "8", "--samples", "4", "--eps", "1"]) == 1
    assert "the backward pass agrees with autograd" in capsys.readouterr().out

    good_backward = N.backward

    def wrong_sign(params, cache, dlogits):
        grads = good_backward(params, cache, dlogits)
        grads["W2"] = -grads["W2"]
        return grads

    monkeypatch.setattr(N, "backward", wrong_sign)
    assert main(["gradcheck", "--batch-size", "8", "--samples", "4", "--json"]) == 1
    captured = capsys.readouterr().out
    assert "FAILED" in captured
    assert json.loads(captured.strip().splitlines()[-1])["passed"] is False


def test_softmax_cross_entropy_is_stable_and_exact():
    logits = np.array([[1000.0, -1000.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([1, 2])
    loss, dlogits = N.softmax_cross_entropy(logits, labels)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss == pytest.approx((2000.0 + np.log(3.0)) / 2)   # -log p = 2000 and log 3
    ref = F.cross_entropy(torch.tensor(logits, requires_grad=True), torch.tensor(labels))
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert np.allclose(dlogits.sum(axis=1), 0.0)                 # softmax - onehot sums to 0


def test_one_numpy_sgd_step_equals_one_torch_step(batch64):
    x, y = batch64
    torch.manual_seed(3)
    model = build_model("fc").double()
    params = B.params_from_torch(model)
    lr = 0.1

    loss_np, grads = N.loss_and_grads(params, x, y)
    N.sgd_step(params, grads, lr)

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_t = F.cross_entropy(model(torch.from_numpy(x).reshape(-1, 1, 28, 28)),
                             torch.from_numpy(y))
    loss_t.backward()
    optimizer.step()

    assert loss_np == pytest.approx(loss_t.item(), rel=1e-12)
    after = B.params_from_torch(model)
    for name in N.PARAM_NAMES:
        np.testing.assert_allclose(params[name], after[name], rtol=0, atol=1e-13)
    assert not np.allclose(params["W2"], B.params_from_torch(build_model("fc").double())["W2"])


def test_scratch_learns_a_subset():
    config = ScratchConfig(epochs=2, limit=5000)               # 158 steps of batch 64
    first, second = (train_scratch(config) for _ in range(2))
    history = first.history
    assert history[1].train_loss < history[0].train_loss
    assert first.metrics.test_accuracy > 0.8                # chance is 0.1
    np.testing.assert_array_equal(first.params["W1"], second.params["W1"])  # same seed


def test_scratch_cli_json(capsys):
    assert main(["scratch", "--epochs", "1", "--limit", "3000", "--json"]) == 0
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out
    m = json.loads(out.strip().splitlines()[-1])
    assert m["epochs"] == 1 and m["train_images"] == 3000 and m["test_images"] == 10000
    assert 0.8 < m["test_accuracy"] <= 1.0


def test_scratch_twin_tracks_the_numpy_net():
    # Two epochs from the same init on the same batches: torch's autograd + optim.SGD lands on
    # the same weights (to float32 rounding) and so the same test accuracy.
    result = train_scratch(ScratchConfig(epochs=2, limit=3000, twin=True))
    m = result.metrics
    assert m.twin_max_weight_diff < 1e-4
    assert abs(m.twin_test_accuracy - m.test_accuracy) <= 2e-4   # at most 2 of 10,000
    assert len(result.twin_test_accuracy) == len(result.history) == 2
    assert result.twin_test_accuracy[-1] == m.twin_test_accuracy


# --- the explicit loop -----------------------------------------------------------------------

def _seeded(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name)


def test_loop_loss_goes_down_on_a_subset(train_subset):
    x, y = train_subset
    losses = train_loop(_seeded("fc"), batch_stream(x, y, 32, seed=0), steps=150, lr=0.1)
    assert len(losses) == 150 and all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])


def test_loop_cnn_loss_goes_down(train_subset):
    x, y = train_subset
    losses = train_loop(_seeded("cnn"), batch_stream(x, y, 12, seed=0), steps=60, lr=0.05)
    assert np.mean(losses[-15:]) < np.mean(losses[:15])


def test_loop_equals_torch_optim_sgd(train_subset):
    """The hand-written update is exactly what torch.optim.SGD does, step for step."""
    x, y = train_subset
    mine = _seeded("fc")
    losses = train_loop(mine, batch_stream(x, y, 12, seed=1), steps=40, lr=0.05)

    ref = _seeded("fc")
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.05)
    ref_losses = []
    for _, (xb, yb) in zip(range(40), batch_stream(x, y, 12, seed=1), strict=False):
        loss = F.cross_entropy(ref(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ref_losses.append(loss.item())
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for a, b in zip(mine.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_loop_same_seed_same_result(train_subset):
    x, y = train_subset
    runs = [train_loop(_seeded("fc", 7), batch_stream(x, y, 12, seed=7), steps=30, lr=0.05)
            for _ in range(2)]
    assert runs[0] == runs[1]
    other = train_loop(_seeded("fc", 8), batch_stream(x, y, 12, seed=8), steps=30, lr=0.05)
    assert other != runs[0]


def test_batch_stream_goes_past_one_pass():
    x, y = torch.zeros(30, 1, 28, 28), torch.arange(30)
    stream = batch_stream(x, y, 12, seed=0)                    # 2 full batches per pass
    seen = [yb for _, (_, yb) in zip(range(4), stream, strict=False)]
    assert all(len(b) == 12 for b in seen)
    first_pass = torch.cat(seen[:2])
    assert len(set(first_pass.tolist())) == 24                 # no repeats inside a pass


# --- the curve -------------------------------------------------------------------------------

def test_ema_matches_its_definition():
    v = [4.0, 2.0, 6.0, 0.0]
    s = ema(v, 0.5)
    assert s.tolist() == [4.0, 3.0, 4.5, 2.25]
    assert np.allclose(ema(np.full(50, 3.0)), 3.0)
    with pytest.raises(ValueError):
        ema(v, 1.0)


def test_curve_is_a_valid_png(tmp_path):
    steps = np.arange(1, 501)
    losses = 2.3 * np.exp(-steps / 100) + 0.05 + 0.01 * np.random.default_rng(0).random(500)
    path = plot_loss_curve(steps, losses, ema(losses), tmp_path / "fig" / "curve.png",
                           title="test")
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size == (800, 450)
    assert len(data) < 200_000
    assert not [p for p in path.parent.iterdir() if p.name != "curve.png"]  # no temp left


def test_live_curve_rewrites_while_running(tmp_path):
    from mnistlab.mechanics.loop import LiveCurve

    live = LiveCurve(tmp_path, title="live", total_steps=100, refresh_seconds=1e-9)
    live(1, 2.3)
    live(2, 2.1)
    steps, losses, _ = read_loss_csv(tmp_path / "loss.csv")   # on disk after step 2
    assert steps.tolist() == [1, 2] and losses.tolist() == [2.3, 2.1]
    assert (tmp_path / "figures" / "loss-curve.png").read_bytes()[:8] == PNG_MAGIC

    quiet = LiveCurve(tmp_path / "quiet", title="q", refresh_seconds=3600)
    quiet(1, 2.3)
    assert not (tmp_path / "quiet" / "loss.csv").exists()     # not yet due
    quiet.write()
    assert (tmp_path / "quiet" / "loss.csv").exists()


# --- the whole command -----------------------------------------------------------------------

def test_loop_cli_writes_a_usable_run(tmp_path, capsys):
    from mnistlab import runs

    out = tmp_path / "loop-run"
    args = ["loop", "--model", "fc", "--steps", "40", "--batch-size", "16", "--lr", "0.1",
            "--limit", "1000", "--refresh", "0.01", "--device", "cpu", "--out", str(out),
            "--json"]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["steps"] == 40 and metrics["kind"] == "loop"
    assert runs.read_config(out).environment.device == "cpu"      # where it trained
    assert 0.3 < metrics["test_accuracy"] <= 1.0

    steps, losses, smoothed = read_loss_csv(out / "loss.csv")
    assert steps.tolist() == list(range(1, 41))
    np.testing.assert_allclose(smoothed, ema(losses), rtol=1e-5)
    assert (out / "figures" / "loss-curve.png").read_bytes()[:8] == PNG_MAGIC
    model = runs.load_model(out)                             # what evaluate / predict use
    assert runs.read_metrics(out).test_accuracy == metrics["test_accuracy"]
    assert runs.read_metrics(out).to_dict() == metrics                # --json is metrics.json
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

    assert main(args) == 2                                   # never overwrites a run
    assert "already holds files" in capsys.readouterr().err


def test_loop_trains_a_cnn_channels_last_and_saves_weights_that_load(tmp_path):
    from mnistlab import runs
    from mnistlab.mechanics.loop import LoopConfig, layout, run_loop

    def second_conv(model):    # block 1 has one input channel: its weight is both layouts
        return [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][1].weight

    assert not second_conv(build_model("cnn")).is_contiguous(memory_format=torch.channels_last)
    assert second_conv(layout(build_model("cnn"))).is_contiguous(
        memory_format=torch.channels_last)
    result = run_loop(LoopConfig(model="cnn", steps=3, limit=120, refresh_seconds=60.0),
                      tmp_path / "run")
    trained = result.model
    assert second_conv(trained).is_contiguous(memory_format=torch.channels_last)
    loaded = runs.load_model(tmp_path / "run")                   # NCHW, from safetensors
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flags", [["--lr", "-1"], ["--batch-size", "0"], ["--model", "nope"],
                                   ["--batch-size", "5000", "--limit", "100"]])
def test_loop_cli_rejects_bad_input(tmp_path, capsys, flags):
    out = tmp_path / "never"
    assert main(["loop", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not out.exists()


def test_loop_device_cuda_without_one_is_one_line_and_writes_nothing(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "never"
    assert main(["loop", "--model", "fc", "--steps", "5", "--limit", "600", "--device", "cuda",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert not out.exists()


def test_loop_stops_on_a_diverging_loss(tmp_path, capsys):
    out = tmp_path / "diverged"
    args = ["loop", "--model", "fc", "--lr", "1e12", "--steps", "50", "--limit", "600",
            "--out", str(out)]
    assert main(args) == 2
    assert "loss became" in capsys.readouterr().err
    assert (out / "loss.csv").is_file()                        # the curve so far is kept
    assert not (out / "metrics.json").exists()                 # but it is not a finished run


def test_an_interrupted_loop_keeps_its_curve_and_says_it_is_no_run(tmp_path, capsys,
                                                                   monkeypatch):
    from mnistlab import console

    real = console.progress

    def progress(*args, **kwargs):        # Ctrl-C at the 20th step, as a terminal sends it
        bar = real(*args, **kwargs)
        update, steps = bar.update, []

        def stop_at_20(n=1):
            update(n)
            steps.append(n)
            if len(steps) >= 20:
                raise KeyboardInterrupt
        bar.update = stop_at_20
        return bar

    monkeypatch.setattr(console, "progress", progress)
    out = tmp_path / "cut"
    assert main(["loop", "--model", "fc", "--steps", "200", "--limit", "600",
                 "--out", str(out), "--json"]) == 130
    shown = capsys.readouterr()
    err = shown.err
    # --json closes with a JSON line still, not with the last progress line
    assert json.loads(shown.out.splitlines()[-1]) == {"error": "interrupted", "exit_code": 130}
    assert f"the loss curve so far is kept in {out}" in err and "no weights" in err
    assert len((out / "loss.csv").read_text().splitlines()) > 10      # the curve so far
    assert not (out / "metrics.json").exists()
    assert main(["evaluate", str(out)]) == 2
    assert "lacks model.safetensors;" in capsys.readouterr().err       # not "config.json or"
