"""mnistlab.checks: one message per rule, and each config's fields checked by their metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from mnistlab import checks
from mnistlab.errors import UserError
from mnistlab.mechanics.loop import LoopConfig
from mnistlab.mechanics.scratch import ScratchConfig
from mnistlab.report.build import ReportConfig
from mnistlab.train.config import TrainConfig, validate, validate_sizes


@pytest.mark.parametrize(("rule", "args", "message"), [
    (checks.positive_int, (0,), "x must be a whole number >= 1, got 0"),
    (checks.positive_int, (2.0,), "x must be a whole number >= 1, got 2"),
    (checks.positive_int, (True,), "x must be a whole number >= 1, got True"),
    (checks.non_negative_int, (-3,), "x must be a whole number >= 0, got -3"),
    (checks.finite_positive, (math.nan,), "x must be a finite number > 0, got nan"),
    (checks.finite_positive, (0,), "x must be a finite number > 0, got 0"),
    (checks.in_range, (1.0, 0, 1), "x must be a number in [0, 1), got 1"),
    (checks.one_of, ("c", ("a", "b")), "x must be one of: a, b; got 'c'"),
    (checks.at_most, (70_000, 60_000, "the training images"),
     "x must be at most 60,000 (the training images), got 70,000"),
    (checks.seed, (2**32,), "x must be a whole number in [0, 4,294,967,296), got 4,294,967,296"),
    (checks.seed, (-5,), "x must be a whole number in [0, 4,294,967,296), got -5"),
])
def test_each_rule_says_what_it_wants(rule, args, message):
    with pytest.raises(UserError) as info:
        rule("x", *args)
    assert str(info.value) == message


def test_rules_pass_good_values():
    assert checks.positive_int("x", 1) == 1
    assert checks.non_negative_int("x", 0) == 0
    assert checks.finite_positive("x", 1e-9) == 1e-9
    assert checks.in_range("x", 0.0, 0, 1) == 0.0
    assert checks.seed("x", 2**32 - 1) == 2**32 - 1
    checks.at_most("x", 5, 5)


@dataclass
class Example:
    limit: int = field(default=0, metadata={"min": 1, "unset": 0, "unset_means": "all"})
    rate: float = field(default=0.5, metadata={"min": 0.0, "below": 1.0})
    kind: str = field(default="a", metadata={"choices": ("a", "b")})
    name: str | None = None


def test_check_fields_lets_the_unset_default_through_but_not_a_bad_value():
    checks.check_fields(Example())                      # limit 0 is "all", the default
    with pytest.raises(UserError, match=r"^limit must be a whole number >= 1, got -1$"):
        checks.check_fields(Example(limit=-1))
    with pytest.raises(UserError, match=r"^--rate must be a number in \[0, 1\)"):
        checks.check_fields(Example(rate=1.5), label=lambda n: f"--{n}")
    with pytest.raises(UserError, match="kind must be one of: a, b"):
        checks.check_fields(Example(kind="c"))
    assert checks.field_kinds(Example)["name"] is str    # `str | None` read as str


def test_describe_says_the_bound_for_help():
    assert checks.describe({"min": 1, "max": 1000}, int) == "1 to 1,000"
    assert checks.describe({"min": 0, "below": checks.SEED_BELOW}, int) == "0 to 2**32 - 1"
    assert checks.describe({"min": 0.0, "below": 1.0}, float) == "in [0, 1)"
    assert checks.describe({"above": 0}, float) == "> 0"
    assert checks.describe({"min": 1, "max_of": "the training images"}, int) \
        == "1 to the training images"


@pytest.mark.parametrize(("config", "message"), [
    (TrainConfig(model="fc", epochs=10**9), "epochs must be at most 1,000"),
    (TrainConfig(model="fc", seed=-5), "seed must be a whole number in"),
    (TrainConfig(model="fc", momentum=1.0), "momentum must be a number in [0, 1)"),
    (TrainConfig(model="fc", lr=math.inf), "lr must be a finite number > 0"),
    (TrainConfig(model="fc", optimizer="lbfgs"), "optimizer must be one of"),
    (TrainConfig(model="nope"), "model must be one of"),
    (TrainConfig(model="fc", model_config={"hidden": -1}), "bad model config for 'fc'"),
    (TrainConfig(model="fc", model_config={"nope": 1}), "bad model config for 'fc'"),
])
def test_train_config_validation(config, message):
    with pytest.raises(UserError) as info:
        validate(config)
    assert message in str(info.value)


def test_train_config_defaults_and_presets_validate():
    from mnistlab.train.presets import preset_overrides

    validate(TrainConfig())
    for model in ("fc", "cnn"):
        validate(TrainConfig(model=model, **preset_overrides("seed", model)))


def test_validate_leaves_the_global_generator_alone():
    import torch

    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    validate(TrainConfig(model="fc"))               # builds the model once, on a forked RNG
    assert torch.equal(torch.rand(3), expected)


def test_sizes_need_the_data():
    config = TrainConfig(model="fc", batch_size=5000, limit=1000)
    with pytest.raises(UserError, match="batch_size must be at most 1,000"):
        validate_sizes(config, 1000, 10_000)
    with pytest.raises(UserError, match="limit must be at most 60,000"):
        validate_sizes(TrainConfig(limit=70_000), 60_000, 10_000)
    validate_sizes(TrainConfig(), 60_000, 10_000)


def test_the_other_configs_share_the_rules():
    with pytest.raises(UserError, match="steps must be at most 1,000,000"):
        LoopConfig(steps=10**7).validate()
    with pytest.raises(UserError, match="batch_size must be at most 100"):
        LoopConfig(limit=100, batch_size=101).validate_sizes(60_000)
    with pytest.raises(UserError, match="threads must be a whole number >= 1"):
        ScratchConfig(threads=0).validate()
    with pytest.raises(UserError, match="limit must be at most 60,000"):
        ScratchConfig(limit=60_001).validate_sizes(60_000)
    with pytest.raises(UserError, match="limit must be a whole number >= 100"):
        ReportConfig(limit=50).check()
    with pytest.raises(UserError, match="first_seed \\+ seeds - 1"):
        ReportConfig(first_seed=2**32 - 1, seeds=2).check()
    for ok in (LoopConfig(), ScratchConfig()):
        ok.validate()
    ReportConfig().check()
    ReportConfig(quick=True).quick_defaults().check()
