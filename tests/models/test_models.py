"""The seed's models: exact parameter counts, shapes, initialisation, the summary table."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.cli import main
from mnistlab.models import available, build_model, count_parameters
from mnistlab.models.summary import render, summarize


@pytest.mark.parametrize(("name", "params"), [("fc", 101_770), ("cnn", 438_026)])
def test_parameter_counts_match_the_seed(name: str, params: int) -> None:
    assert count_parameters(build_model(name)) == params


@pytest.mark.parametrize("name", ["fc", "cnn"])
def test_logits_shape_and_finite(name: str) -> None:
    model = build_model(name)
    out = model(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 10)
    assert torch.isfinite(out).all()


def test_keras_init_is_glorot_uniform_with_zero_bias() -> None:
    torch.manual_seed(0)
    dense = build_model("fc")[1]                      # Linear(784, 128)
    limit = (6 / (784 + 128)) ** 0.5                  # Glorot-uniform bound
    assert dense.weight.abs().max() <= limit
    assert dense.weight.abs().max() > 0.9 * limit     # spread over the whole range
    assert torch.count_nonzero(dense.bias) == 0


def test_torch_init_differs_from_keras() -> None:
    torch.manual_seed(0)
    bias = build_model("fc", init="torch")[1].bias
    assert torch.count_nonzero(bias) > 0              # PyTorch draws biases, Keras zeros them


def test_registry_lists_both_seed_models() -> None:
    assert {"fc", "cnn"} <= set(available())


def test_summary_totals_and_mult_adds() -> None:
    s = summarize(build_model("cnn"), "cnn")
    assert s.total_params == s.trainable_params == 438_026
    assert s.non_trainable_params == 0
    assert 11.5e6 < s.mult_adds < 12.5e6              # about 12.0 M multiply-adds per image
    assert [x.output_shape for x in s.layers][:3] == [[64, 26, 26], [64, 26, 26], [64, 13, 13]]
    table = render(s)
    assert "Total params: 438,026" in table and "conv2d_2 (Conv2d)" in table


def test_summary_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "fc"]) == 0
    assert "Total params: 101,770" in capsys.readouterr().out
    assert main(["summary", "cnn", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["total_params"] == 438_026
    assert data["flops_per_image"] == 2 * data["mult_adds_per_image"]


def test_summary_of_unknown_model_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'resnet'" in err


def test_strided_model_has_no_pooling_and_shrinks_by_stride() -> None:
    model = build_model("strided")
    assert count_parameters(model) == 325_994
    assert not any(isinstance(m, torch.nn.MaxPool2d | torch.nn.AvgPool2d) for m in model.modules())
    s = summarize(model, "strided")
    shapes = [x.output_shape for x in s.layers if x.output_shape and len(x.output_shape) == 3]
    assert [64, 4, 4] in shapes and [128, 1, 1] in shapes and [32, 12, 12] in shapes
    assert 14e6 < s.mult_adds < 16e6                  # about half of best's
    out = model.eval()(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_strided_trains_with_best_recipe_for_longer() -> None:
    from mnistlab.train.presets import preset_overrides

    best, strided = preset_overrides("best", "best"), preset_overrides("best", "strided")
    assert strided.pop("epochs") == 15 and best.pop("epochs") == 12
    assert strided == best


def test_an_unknown_model_setting_is_named_with_the_settings_it_takes() -> None:
    # it said "cnn() got an unexpected keyword argument 'foo'": Python's words, no choices
    from mnistlab.errors import UserError
    from mnistlab.models.registry import build_checked

    with pytest.raises(UserError, match=r"no setting 'foo'; it takes hidden, init, widths"):
        build_checked("cnn", foo=1)
    assert count_parameters(build_checked("fc", hidden=64)) > 0
