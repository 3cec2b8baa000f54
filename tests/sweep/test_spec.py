"""The sweep spec: --grid parsing and typing, validation before anything starts, expansion."""

from __future__ import annotations

import pytest

from mnistlab.errors import UserError
from mnistlab.sweep.spec import SweepSpec, parse_grid


def test_grid_values_take_their_setting_s_type():
    grid = parse_grid(["lr=0.01,0.1", "batch_size=32,64", "optimizer=sgd,adam",
                       "nesterov=true,no", "eval-each-epoch=1"])
    assert grid == {"lr": [0.01, 0.1], "batch_size": [32, 64], "optimizer": ["sgd", "adam"],
                    "nesterov": [True, False], "eval_each_epoch": [True]}
    assert type(grid["batch_size"][0]) is int


@pytest.mark.parametrize("items, message", [
    (["foo=1"], "unknown training setting"),
    (["lr=fast"], "'fast' is not a float"),
    (["batch_size=3.5"], "is not a int"),
    (["nesterov=maybe"], "is not a bool"),
    (["lr="], "has no values"),
    (["lr"], "expected KEY=V1,V2"),
    (["seed=1,2"], "--seeds"),
    (["lr=0.1", "lr=0.2"], "given twice"),
    (["lr=0.1,0.1"], "listed twice"),
])
def test_bad_grid_is_one_clear_error(items, message):
    with pytest.raises(UserError, match=message):
        parse_grid(items)


@pytest.mark.parametrize("changes, message", [
    ({"concurrency": 0}, "--concurrency must be at least 1"),
    ({"threads_per_trial": 0}, "--threads-per-trial"),
    ({"seeds": []}, "at least one seed"),
    ({"seeds": [1, 1]}, "repeats a seed"),
    ({"grid": {"lr": []}}, "has no values"),
    ({"grid": {"lr": [-1.0]}}, "lr must be a finite number > 0, got -1"),
    ({"grid": {"optimizer": ["lbfgs"]}}, "optimizer must be one of: .*; got .lbfgs."),
    ({"search": "bayes"}, "unknown --search"),
    ({"search": "random"}, "needs --samples"),
    ({"search": "random", "samples": 3, "grid": {"lr": [0.1, 0.2]}}, "more than the 2"),
    ({"scheduler": "pbt"}, "unknown --scheduler"),
    ({"preset": "nope"}, "unknown preset"),
    # what `mnistlab train` refuses, refused before any trial (each used to fail alone)
    ({"grid": {"engine": ["fused"]}}, "the fused engine trains the cnn family.*use --grid "
                                      "engine=autograd"),
    ({"grid": {"engine": ["channels-last"]}}, "channels-last engine lays out convolutions.*"
                                              "use --grid engine=autograd"),
    ({"grid": {"engine": ["winograd"]}, "device": "cuda"}, "CPU only, not on cuda; use "
                                                           "--grid engine=autograd or --device "
                                                           "cpu"),
    ({"grid": {"limit": [0, 100]}}, "takes whole numbers >= 1, not 0"),
    ({"grid": {"limit": [70_000]}}, "limit must be at most 60,000"),
    ({"grid": {"validation": [59_999]}, "limit": 500}, "left after --validation 59,999"),
    ({"grid": {"batch_size": [600]}, "limit": 500}, "batch_size must be at most 500"),
    ({"test_limit": 99_999}, "test_limit must be at most 10,000"),
])
def test_bad_spec_is_refused_before_anything_starts(changes, message):
    spec = SweepSpec(models=["fc"], **changes)
    with pytest.raises(UserError, match=message):
        spec.validate()


def test_trials_are_model_x_settings_x_seeds_on_the_preset():
    spec = SweepSpec(models=["fc"], seeds=[0, 1, 2, 3], grid={"lr": [0.01, 0.1]},
                     threads_per_trial=2, limit=2000)
    spec.validate()
    trials = spec.trials()
    assert [t.id for t in trials[:5]] == ["fc-lr0.01-s0", "fc-lr0.01-s1", "fc-lr0.01-s2",
                                          "fc-lr0.01-s3", "fc-lr0.1-s0"]
    c = trials[-1].config
    # the seed preset (SGD, batch 64, 5 epochs), then the grid, the seed, the threads
    assert (c.optimizer, c.batch_size, c.epochs, c.lr, c.seed, c.threads, c.limit,
            c.preset) == ("sgd", 64, 5, 0.1, 3, 2, 2000, "seed")
    assert trials[0].settings == {"lr": 0.01}


def test_random_search_draws_a_fixed_subset():
    spec = SweepSpec(models=["fc"], grid={"lr": [0.01, 0.03, 0.1], "batch_size": [32, 64]},
                     search="random", samples=3)
    spec.validate()
    picked = spec.settings_list()
    assert len(picked) == 3 and picked == spec.settings_list()
    assert all(p in SweepSpec(models=["fc"], grid=spec.grid).settings_list() for p in picked)


def test_spec_round_trips_through_json():
    spec = SweepSpec(models=["fc", "cnn"], seeds=[3, 5], grid={"lr": [0.1]}, concurrency=2)
    assert SweepSpec.from_dict(spec.to_dict()) == spec
    t = spec.trials()[0]
    assert type(t).from_dict(t.to_dict()) == t
