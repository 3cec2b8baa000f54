"""The flags generated from the config dataclasses: names, help, layering, parse-time checks."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from mnistlab import checks
from mnistlab.cli import build_parser, main
from mnistlab.cli.flags import check_parsed
from mnistlab.cli.train import NOT_FLAGS, build_config
from mnistlab.errors import UserError
from mnistlab.mechanics.loop import LoopConfig
from mnistlab.mechanics.scratch import ScratchConfig
from mnistlab.train.config import TrainConfig


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def option_strings(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    sub.format_help()                              # adds the deferred options
    return {s for a in sub._actions for s in a.option_strings}


def test_every_train_config_field_is_a_flag():
    flags = option_strings("train")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in NOT_FLAGS:
            assert "--" + f.name.replace("_", "-") in flags
            assert f.metadata.get("help"), f"{f.name} has no help"
    # the flags the command had before they were generated
    assert {"--preset", "--model-config", "--out", "--resume", "--json", "--no-nesterov",
            "--no-eval-each-epoch", "--threads-oversubscribe"} <= flags


def test_loop_and_scratch_keep_their_flags():
    assert {"--model", "--steps", "--batch-size", "--lr", "--seed", "--limit", "--threads",
            "--refresh", "--out", "--json"} <= option_strings("loop")
    assert {"--epochs", "--lr", "--batch-size", "--seed", "--limit", "--threads", "--twin",
            "--json"} <= option_strings("scratch")


def test_help_says_default_choices_and_bound(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--optimizer {sgd,adam,adamw,rmsprop}" in text
    assert "passes over the training images (default: 5; 1 to 1,000)" in text
    assert "(default: 0; 0 to 2**32 - 1)" in text                      # --seed
    assert "(default: all; 1 to the training images)" in text           # --limit
    assert f"0 to {checks.cores()}, this machine's cores" in text       # --threads


def test_top_level_help_does_not_import_torch():
    code = ("import sys; from mnistlab.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_flags_left_out_keep_the_preset_and_given_ones_win():
    config = build_config(parse("train", "fc"))
    assert (config.optimizer, config.lr, config.preset) == ("sgd", 0.1, "seed")
    assert config.eval_each_epoch is True
    config = build_config(parse("train", "fc", "--lr", "0.05", "--no-eval-each-epoch",
                                "--limit", "100"))
    assert (config.optimizer, config.lr, config.limit) == ("sgd", 0.05, 100)
    assert config.eval_each_epoch is False
    assert build_config(parse("train", "fc", "--preset", "seed")).preset == "seed"


def test_loop_and_scratch_configs_from_flags():
    args = parse("loop", "--refresh", "0.5", "--steps", "7")
    from mnistlab.cli import flags

    assert LoopConfig(**flags.given(args, LoopConfig)) == LoopConfig(refresh_seconds=0.5,
                                                                      steps=7)
    args = parse("scratch", "--twin")
    assert ScratchConfig(**flags.given(args, ScratchConfig)) == ScratchConfig(twin=True)


@pytest.mark.parametrize("argv", [
    ["train", "fc", "--limit", "0"], ["loop", "--limit", "0"], ["scratch", "--limit", "0"],
    ["report", "--limit", "0"], ["speedrun", "--limit", "0"], ["train", "fc", "--test-limit", "0"],
    ["report", "--epochs", "0"], ["loop", "--steps", "0"],
])
def test_zero_is_no_way_to_say_all(argv, capsys):
    """Left out means all (or one pass); 0 given is refused, the same on every command."""
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --")


@pytest.mark.parametrize(("argv", "says"), [
    (["train", "fc", "--epochs", "1000000000"], "--epochs must be at most 1,000"),
    (["train", "fc", "--seed", "-5"], "--seed must be a whole number in [0,"),
    (["train", "fc", "--seed", str(2**32)], "--seed must be a whole number in [0,"),
    (["train", "fc", "--optimizer", "lbfgs"], "--optimizer must be one of: sgd, adam"),
    (["train", "fc", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["train", "fc", "--epochs", "two"], "invalid int value: 'two'"),
    (["serve", "--port", "70000"], "--port must be at most 65,535"),
    (["predict", "x.png", "--top", "11"], "--top must be at most 10"),
    (["gradcheck", "--eps", "0"], "--eps must be a finite number > 0"),
    (["data", "info", "--dataset", "emnist"], "--dataset must be one of: mnist, fashion-mnist"),
    (["nope"], "the command must be one of:"),
])
def test_values_beyond_sense_are_one_line(argv, says, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_threads_are_capped_at_the_cores_unless_asked():
    too_many = str(checks.cores() + 1)
    for argv in (["train", "fc"], ["evaluate", "r"], ["loop"], ["scratch"], ["report"],
                 ["serve"], ["bench"], ["speedrun"], ["bench-serve"]):
        args = parse(*argv, "--threads", too_many)
        with pytest.raises(UserError, match=r"--threads must be at most .*--threads-oversub"):
            check_parsed(args)
        check_parsed(parse(*argv, "--threads", too_many, "--threads-oversubscribe"))
        # and even then not without end (999 on 2 cores: a load of 370)
        with pytest.raises(UserError, match=r"8 times the cores"):
            check_parsed(parse(*argv, "--threads", str(8 * checks.cores() + 1),
                               "--threads-oversubscribe"))


def test_batch_larger_than_the_data_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "fc", "--batch-size", "10000000", "--out", str(out)]) == 2
    assert main(["train", "fc", "--limit", "100", "--batch-size", "101", "--out", str(out)]) == 2
    assert main(["train", "fc", "--limit", "100000", "--out", str(out)]) == 2
    assert main(["scratch", "--batch-size", "60001"]) == 2
    assert main(["gradcheck", "--batch-size", "60001"]) == 2
    assert main(["report", "--test-limit", "10001", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all("must be at most" in line for line in err), err
    assert not out.exists()
