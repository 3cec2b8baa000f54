"""The typed run schema: old run folders read, evaluate and resume; files keep their content;
unknown keys survive; damaged values are refused in one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.errors import UserError
from mnistlab.runs import UnverifiedWeightsWarning
from mnistlab.train.config import TrainConfig
from mnistlab.train.evaluation import evaluate_run, load_run
from mnistlab.train.resume import check_resumable

# Written by mnistlab 0.1.0: `mnistlab train fc --preset seed --seed 0 --limit 2000 --epochs 2`
V010 = Path(__file__).parent / "fixtures" / "fc-v0.1.0"


def _json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    return Path(shutil.copytree(V010, tmp_path / "fc-v0.1.0"))


def test_a_v0_1_0_run_reads_typed() -> None:
    config = runs.read_config(V010)
    assert config.model == "fc" and config.kind == "train" and config.dataset == "mnist"
    assert isinstance(config.train, TrainConfig)
    assert config.train.limit == 2000 and config.train.epochs == 2 and config.train.lr == 0.1
    assert config.environment is not None and config.environment.mnistlab == "0.1.0"
    assert config.command is not None and config.command.startswith("mnistlab train fc")
    metrics = runs.read_metrics(V010)
    assert metrics.test_accuracy == 0.7808 and metrics.epochs == 2 and metrics.kind is None
    history = runs.read_history(V010)
    assert [r.epoch for r in history] == [1, 2] and history[-1].eval_steps == 313
    with pytest.warns(UnverifiedWeightsWarning, match="carries no hash"):   # pre-hash weights
        assert runs.load_checkpoint(V010).history == history


def test_a_v0_1_0_run_writes_back_the_same_content(tmp_path: Path) -> None:
    runs.write_config(tmp_path, runs.read_config(V010))
    runs.write_metrics(tmp_path, runs.read_metrics(V010))
    runs.write_history(tmp_path, runs.read_history(V010))
    for name in (runs.METRICS, runs.HISTORY_JSON, runs.HISTORY_CSV):
        assert (tmp_path / name).read_text() == (V010 / name).read_text(), name
    # config.json: the same, plus the training settings added since 0.1.0 at their defaults
    # (the values that run trained with), each in its field's place
    rewritten, original = _json(tmp_path / runs.CONFIG), _json(V010 / runs.CONFIG)
    added = {k: v for k, v in rewritten["train"].items() if k not in original["train"]}
    assert added == {"validation": 0, "device": "auto", "beta1": 0.9, "beta2": 0.999,
                     "cycle_momentum": True}
    assert {**rewritten, "train": {k: v for k, v in rewritten["train"].items()
                                   if k not in added}} == original


def test_a_v0_1_0_run_evaluates_to_its_recorded_accuracy() -> None:
    with pytest.warns(UnverifiedWeightsWarning, match="carries no hash"):
        loaded = load_run(V010)
    assert loaded.precision == "fp32" and loaded.dataset == "mnist" and not loaded.model.training
    result = evaluate_run(loaded)                       # the full test set, batches of 32
    assert result.test_images == 10_000 and result.steps == 313
    assert result.test_accuracy == runs.read_metrics(V010).test_accuracy == 0.7808


def test_a_v0_1_0_run_resumes(old_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Both epochs were done: resuming restores the checkpoint and evaluates once more.
    (old_run / runs.METRICS).unlink()
    assert main(["train", "fc", "--out", str(old_run), "--resume", "--threads", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["test_accuracy"] == 0.7808 and out["epochs"] == 2
    # left as it was, but for the resumption it records
    resumed = _json(old_run / runs.CONFIG)
    (record,) = resumed.pop("resumed")
    assert resumed == _json(V010 / runs.CONFIG)
    assert record["epoch"] == 2 and record["threads"] == 1 and record["environment"]["threads"] == 1
    assert runs.read_config(old_run).resumed[0].epoch == 2              # and reads back typed
    assert list(out) == list(_json(V010 / runs.METRICS))                # same keys, same order


def test_environment_isa_and_device_are_optional() -> None:
    # a 0.1.0 run has neither: they read as None and are not written back
    env = runs.read_config(V010).environment
    assert env is not None and env.isa is None and env.device is None
    assert "isa" not in env.to_dict() and "device" not in env.to_dict()
    fresh = runs.Environment.from_dict({"isa": ["avx2"], "device": "cpu"})
    assert fresh.to_dict()["isa"] == ["avx2"] and fresh.to_dict()["device"] == "cpu"
    with pytest.raises(runs.SchemaError):
        runs.Environment.from_dict({"isa": "avx2"})


def test_isa_flags_keep_the_ones_that_matter() -> None:
    from mnistlab.runs.environment import isa_flags

    x86 = "processor\t: 0\nflags\t\t: fpu sse4_2 avx2 avx512f amx_tile amx_bf16 avx512_bf16 ht\n"
    assert isa_flags(x86) == ["sse4_2", "avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert isa_flags("Features\t: fp asimd sve bf16\n") == ["asimd", "sve", "bf16"]
    assert isa_flags("no flags here") == []


def test_cpu_name_tells_generations_apart_that_share_a_name() -> None:
    from mnistlab.runs.environment import cpu_name

    def block(family: int, model: int) -> str:
        return (f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\n"
                f"model\t\t: {model}\nmodel name\t: AMD EPYC\nflags\t\t: avx2\n\n"
                f"processor\t: 1\ncpu family\t: 99\nmodel\t\t: 99\nmodel name\t: AMD EPYC\n")

    zen3, zen4 = cpu_name(block(25, 1)), cpu_name(block(25, 17))
    assert zen3 == "AMD EPYC (family 25, model 1)" and zen4 == "AMD EPYC (family 25, model 17)"
    # no numbers (arm64 names no "cpu family"): the name alone
    assert cpu_name("processor\t: 0\nmodel name\t: Neoverse\nFeatures\t: fp\n") == "Neoverse"


def test_unknown_keys_are_kept_and_written_back(tmp_path: Path) -> None:
    config = runs.read_config(V010).to_dict()     # today's keys, then some from the future
    assert isinstance(config, dict)
    config["from_the_future"] = {"a": [1, 2]}
    config["train"]["warp"] = 9
    config["environment"]["gpu"] = "none"
    read = runs.RunConfig.from_dict(config)
    assert read.extra == {"from_the_future": {"a": [1, 2]}} and read.train_extra == {"warp": 9}
    assert read.environment is not None and read.environment.extra == {"gpu": "none"}
    assert read.to_dict() == config
    metrics = runs.RunMetrics.from_dict({"test_accuracy": 0.5, "calibration": 0.01})
    assert metrics.extra == {"calibration": 0.01}
    assert runs.HistoryRow.from_dict({"epoch": 1, "train_loss": 1.0, "x": 2}).extra == {"x": 2}


def test_resume_refuses_a_setting_it_does_not_know(old_run: Path) -> None:
    config = _json(old_run / runs.CONFIG)
    assert isinstance(config, dict)
    config["train"]["warp"] = 9                          # a newer mnistlab's setting
    (old_run / runs.CONFIG).write_text(json.dumps(config))
    settings = runs.read_config(old_run).train
    assert settings is not None
    with pytest.raises(UserError, match="warp=9"):
        check_resumable(settings, old_run)


@pytest.mark.parametrize(("name", "content", "needle"), [
    (runs.METRICS, {"test_accuracy": "high"}, "test_accuracy"),
    (runs.METRICS, [1, 2], "JSON object"),
    (runs.CONFIG, {"model_config": {}}, "lacks model"),
    (runs.CONFIG, {"model": "fc", "train": {"epochs": "five"}}, "epochs"),
    (runs.CONFIG, {"model": "fc", "kind": "dream"}, "kind"),
    (runs.HISTORY_JSON, [{"epoch": 1}], "train_loss"),
])
def test_wrong_values_are_one_line_user_errors(tmp_path: Path, name: str, content: object,
                                                needle: str) -> None:
    (tmp_path / name).write_text(json.dumps(content))
    read = {runs.METRICS: runs.read_metrics, runs.CONFIG: runs.read_config,
            runs.HISTORY_JSON: runs.read_history}[name]
    with pytest.raises(UserError, match=needle) as info:
        read(tmp_path)
    assert "\n" not in str(info.value)


def test_loop_rows_keep_their_layout_and_nan() -> None:
    row = runs.HistoryRow(epoch=1, steps=40, train_loss=1.5, smoothed_loss=1.2)
    data = row.to_dict()
    assert list(data) == ["epoch", "steps", "train_loss", "smoothed_loss", "test_loss",
                          "test_accuracy"]
    assert math.isnan(data["test_loss"])                 # as loop runs always wrote it
    assert runs.HistoryRow.from_dict(data) == row        # ... and None again when read


def test_loop_config_round_trips() -> None:
    settings = runs.LoopSettings(model="cnn", steps=5000, batch_size=12, lr=0.01, seed=0,
                                 limit=0, threads=1, smoothing=0.95, refresh_seconds=5.0)
    config = runs.RunConfig(model="cnn", kind="loop", loop=settings, threads=1)
    data = config.to_dict()
    assert list(data) == ["model", "model_config", "precision", "threads", "parameters", "kind",
                          "train"]
    assert list(data["train"])[:3] == ["dataset", "optimizer", "model"]
    read = runs.RunConfig.from_dict(data)
    assert read == config and read.dataset == "mnist" and read.train is None
