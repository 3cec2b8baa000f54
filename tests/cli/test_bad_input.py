"""Generated bad input for every command, driven in process through ``mnistlab.cli.main``.

Whatever the bad input (a number out of its range, text where a number goes, a path to a file,
a missing or unwritable folder, garbage bytes as a run or as an image), the command must:
exit 2, print exactly one ``error:`` line on standard error and no traceback, and leave every
file that was in its working folder byte for byte as it was.

Each property is bounded (few examples, no deadline) so the whole suite takes well under a
minute; every argv carries small sizes, so that a check which let a bad value through would
cost a second of training, not an hour.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401  (a session fixture)
from mnistlab import checks
from mnistlab.cli import main

pytestmark = pytest.mark.timeout(120)

BOUNDED = settings(max_examples=12, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow])
# most number checks stop the parse (milliseconds each): room for more examples
MANY = settings(BOUNDED, max_examples=40)

TRAIN = 60_000          # MNIST's training images
TEST = 10_000
CORES = checks.cores()
SMALL_TRAIN = ["--epochs", "1", "--limit", "200", "--test-limit", "200"]

# command prefix -> {flag: bound}. An int's bound is (INT, lowest, highest or None); a float's
# is (FLOAT, low, low allowed?, high or None, high allowed?).
INT, FLOAT = "int", "float"
SEED = (INT, 0, 2**32 - 1)
POSITIVE = (FLOAT, 0.0, False, None, False)              # lr
FRACTION = (FLOAT, 0.0, True, 1.0, False)                # momentum, weight decay: [0, 1)
STEP = (FLOAT, 0.0, False, 1.0, True)                    # eps: (0, 1]
NUMBERS: dict[tuple[str, ...], dict[str, tuple]] = {
    ("train", "fc", *SMALL_TRAIN): {
        "--epochs": (INT, 1, 1000), "--batch-size": (INT, 1, TRAIN), "--seed": SEED,
        "--eval-batch-size": (INT, 1, 100_000), "--threads": (INT, 0, CORES),
        "--limit": (INT, 1, TRAIN), "--test-limit": (INT, 1, TEST), "--lr": POSITIVE,
        "--momentum": FRACTION, "--eps": STEP, "--weight-decay": FRACTION,
        "--label-smoothing": FRACTION},
    ("evaluate", "no-such-run"): {"--threads": (INT, 0, CORES)},
    ("loop", "--steps", "2", "--limit", "200"): {
        "--steps": (INT, 1, 1_000_000), "--batch-size": (INT, 1, TRAIN), "--seed": SEED,
        "--limit": (INT, 1, TRAIN), "--threads": (INT, 0, CORES), "--lr": POSITIVE,
        "--refresh": (FLOAT, 0.0, False, 3600.0, True)},
    ("scratch", "--epochs", "1", "--limit", "200"): {
        "--epochs": (INT, 1, 1000), "--batch-size": (INT, 1, TRAIN), "--seed": SEED,
        "--limit": (INT, 1, TRAIN), "--threads": (INT, 1, CORES), "--lr": POSITIVE},
    ("gradcheck", "--batch-size", "4", "--samples", "2"): {
        "--batch-size": (INT, 1, TRAIN), "--seed": SEED, "--samples": (INT, 1, 10_000),
        "--eps": STEP},
    ("report", "--quick", "--limit", "200", "--loop-steps", "2"): {
        "--seeds": (INT, 1, 100), "--first-seed": SEED, "--epochs": (INT, 1, 1000),
        "--limit": (INT, 100, TRAIN), "--test-limit": (INT, 100, TEST),
        "--loop-steps": (INT, 1, 1_000_000), "--threads": (INT, 0, CORES)},
    ("predict", "no-such.png"): {"--top": (INT, 1, 10)},
    ("serve", "no-such-run"): {"--port": (INT, 1, 65535), "--threads": (INT, 1, CORES)},
    ("bench", "--quick", "--no-keras"): {"--epochs": (INT, 1, 1000),
                                         "--threads": (INT, 0, CORES)},
    ("speedrun", "--seeds", "1", "--limit", "1000"): {
        "--seeds": (INT, 1, 100), "--first-seed": SEED, "--threads": (INT, 0, CORES),
        "--limit": (INT, 1, TRAIN)},
    ("bench-serve", "no-such-run"): {"--requests": (INT, 1, 1_000_000),
                                     "--clients": (INT, 1, 1024), "--threads": (INT, 1, CORES)},
}
CASES = [(prefix, flag, bound) for prefix, flags in NUMBERS.items()
         for flag, bound in flags.items()]
WITH_THREADS = [prefix for prefix, flags in NUMBERS.items() if "--threads" in flags]


def out_of_range(kind: str, *bound: object) -> st.SearchStrategy[str]:
    """The text of a number outside ``bound`` (NaN and the infinities, for a float)."""
    if kind == INT:
        low, high = bound
        beyond = st.integers(max_value=low - 1)
        if high is not None:
            beyond |= st.integers(min_value=high + 1, max_value=10**30)
        return beyond.map(str)
    low, low_ok, high, high_ok = bound
    # below an allowed 0, stay clear of -0.0 (which equals 0 and is allowed)
    bad = st.sampled_from([math.nan, math.inf, -math.inf]) | (
        st.floats(max_value=-1e-9) if low_ok else st.floats(max_value=low))
    if high is not None:
        bad |= st.floats(min_value=high, exclude_min=high_ok, max_value=1e300)
    return bad.map(repr)


def not_a_number(kind: str) -> st.SearchStrategy[str]:
    parse = int if kind == INT else float

    def parses(text: str) -> bool:
        try:
            parse(text)
        except (ValueError, OverflowError):
            return False
        return True

    return st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
        lambda t: not parses(t))


# --- the working folder and the check ------------------------------------------------------

def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, mnist_raw) -> Path:
    """A working folder holding files a bad command must leave alone."""
    folder = tmp_path_factory.mktemp("bad-input")
    (folder / "afile").write_text("a regular file, not a folder\n")
    (folder / "notes.txt").write_text("keep me\n")
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nthen nothing that decodes")
    run = folder / "garbage-run"
    run.mkdir()
    (run / "config.json").write_text("{ not json")
    (run / "model.safetensors").write_bytes(b"\x00" * 64)
    (folder / "runs").mkdir()
    (folder / "runs" / "keep.txt").write_text("an empty runs folder\n")
    return folder


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def assert_refused(work: Path, argv: list[str], **environ: str) -> str:
    from mnistlab.data import _load
    from mnistlab.paths import data_dir

    before = digest(work)
    err, out = io.StringIO(), io.StringIO()
    environ = {"MNISTLAB_RUNS_DIR": str(work / "runs"),
               "MNISTLAB_REPORT_DIR": str(work / "report"),
               "MNISTLAB_DATA_DIR": str(data_dir()), **environ}
    with contextlib.chdir(work), env(**environ), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:          # what a console script would exit with
            code = exc.code
        finally:
            _load.cache_clear()            # a cache read under another MNISTLAB_DATA_DIR
    text = err.getvalue()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code == 2, (argv, code, text)
    assert "Traceback" not in text, (argv, text)
    assert len(errors) == 1, (argv, text)
    if "--json" in argv:                   # the closing JSON line says why as well
        assert json.loads(out.getvalue().splitlines()[-1]) == {
            "error": errors[0].removeprefix("error: "), "exit_code": 2}, argv
    after = digest(work)
    assert {k: after.get(k) for k in before} == before, argv
    return out.getvalue()


# --- the properties ------------------------------------------------------------------------

@MANY
@given(st.sampled_from(CASES).flatmap(
    lambda case: st.tuples(st.just(case), out_of_range(*case[2]))))
def test_numbers_out_of_range(work, case_value):
    (prefix, flag, _), value = case_value
    assert_refused(work, [*prefix, f"{flag}={value}"])


@MANY
@given(st.sampled_from(CASES).flatmap(
    lambda case: st.tuples(st.just(case), not_a_number(case[2][0]))))
def test_text_where_a_number_goes(work, case_value):
    (prefix, flag, _), value = case_value
    assert_refused(work, [*prefix, f"{flag}={value}"])


@BOUNDED
@given(st.sampled_from(WITH_THREADS), st.integers(min_value=CORES + 1, max_value=10**6))
def test_threads_beyond_the_cores(work, prefix, threads):
    assert_refused(work, [*prefix, "--threads", str(threads)])


# an output that is a file, under a file, in /proc, or a folder that already holds files
BAD_OUTPUTS = ["afile", "afile/run", "/proc/mnistlab-test/run", "garbage-run"]
PATH_COMMANDS = [
    (lambda p: ["train", "fc", *SMALL_TRAIN, "--out", p], BAD_OUTPUTS),
    (lambda p: ["loop", "--steps", "2", "--limit", "200", "--out", p], BAD_OUTPUTS),
    (lambda p: ["train", "fc", *SMALL_TRAIN, "--resume", "--out", p], BAD_OUTPUTS),
    # a report re-writes a folder that holds files (that is --reuse's job): not bad input
    (lambda p: ["report", "--quick", "--limit", "200", "--loop-steps", "2", "--out", p],
     BAD_OUTPUTS[:3]),
    (lambda p: ["predict", "garbage-run", "garbage.png", "--debug-dir", p], BAD_OUTPUTS[:3]),
]
BAD_INPUTS = ["afile", "notes.txt", "no-such-run", "garbage-run", "runs", "/proc/self/status"]
INPUT_COMMANDS = [
    lambda p: ["evaluate", p], lambda p: ["evaluate", "--ensemble", p, "garbage-run"],
    lambda p: ["predict", p, "garbage.png"], lambda p: ["export", p],
    lambda p: ["serve", p], lambda p: ["bench-serve", p, "--requests", "1"],
    lambda p: ["predict", "--onnx", p, "garbage.png"], lambda p: ["serve", "--onnx", p],
    lambda p: ["data", "fetch", "--from", p], lambda p: ["calibrate", p],
]


@BOUNDED
@given(st.sampled_from(PATH_COMMANDS).flatmap(
    lambda c: st.tuples(st.just(c[0]), st.sampled_from(c[1]))))
def test_outputs_that_cannot_be_written(work, command_path):
    command, path = command_path
    assert_refused(work, command(path))


@BOUNDED
@given(st.sampled_from(INPUT_COMMANDS), st.sampled_from(BAD_INPUTS))
def test_inputs_that_are_not_what_they_should_be(work, command, path):
    assert_refused(work, command(path))


@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.sampled_from([["data", "verify"], ["data", "info"], ["data", "fetch"],
                        ["train", "fc", *SMALL_TRAIN, "--out", "new-run"],
                        ["scratch", "--epochs", "1", "--limit", "200"]]),
       st.sampled_from(["afile", "afile/below", "notes.txt"]))
def test_a_data_cache_that_is_a_file(work, argv, cache):
    assert_refused(work, argv, MNISTLAB_DATA_DIR=str(work / cache))


@BOUNDED
@given(st.sampled_from(["afile", "afile/run", "notes.txt"]),
       st.sampled_from([["train", "fc", *SMALL_TRAIN], ["loop", "--steps", "2", "--limit", "200"]]))
def test_a_runs_folder_that_is_a_file(work, runs, argv):
    assert_refused(work, argv, MNISTLAB_RUNS_DIR=str(work / runs))


@BOUNDED
@given(config=st.binary(max_size=200), weights=st.binary(max_size=200),
       command=st.sampled_from([["evaluate"], ["export"], ["serve"], ["predict"],
                                ["calibrate"], ["train", "fc", "--resume", "--out"]]))
def test_garbage_files_as_a_run(work, config, weights, command):
    run = work / "generated-run"
    run.mkdir(exist_ok=True)
    (run / "config.json").write_bytes(config)
    (run / "model.safetensors").write_bytes(weights)
    argv = [*command, str(run)] + (["garbage.png"] if command == ["predict"] else [])
    assert_refused(work, argv)


@BOUNDED
@given(image=st.binary(max_size=300))
def test_garbage_files_as_an_image(work, trained_run, image):  # noqa: F811
    picture = work / "generated.png"
    picture.write_bytes(image)
    assert_refused(work, ["predict", str(trained_run), str(picture)])


def test_a_mistyped_run_name_is_refused_before_any_model_answers(work, trained_run,  # noqa: F811
                                                                  tmp_path):
    # "cnn6" for "cnn5": answering with the best run instead would pass off another model
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "fc-good")
    picture = tmp_path / "digit.png"
    picture.write_bytes(png_bytes(render_mnist(np.eye(28, dtype=np.uint8) * 255)))
    out = assert_refused(work, ["predict", "fc-goood", str(picture)],
                         MNISTLAB_RUNS_DIR=str(runs))
    assert "model:" not in out
    assert "fc-goood: no such run or picture" in assert_refused(
        work, ["predict", "fc-goood", str(picture), "--json"], MNISTLAB_RUNS_DIR=str(runs))


@BOUNDED
@given(st.sampled_from(['{"hidden": -1}', '{"hidden": "wide"}', '{"nope": 1}', "[1]", "{",
                        '{"hidden": 1e400}']))
def test_bad_model_settings(work, text):
    assert_refused(work, ["summary", "fc", "--config", text])
    assert_refused(work, ["train", "fc", *SMALL_TRAIN, "--model-config", text, "--out", "m"])


@pytest.mark.parametrize("argv", [
    ["evaluate", "no-such-run", "--json"],                      # refused by the command
    ["speedrun", "--seeds", "0", "--json"],                     # refused by the parser
    ["bench", "--json", "--no-such-flag"],                      # not an option at all
])
def test_json_asked_for_gets_the_error_as_its_closing_line(work, argv):
    assert_refused(work, argv)


@pytest.mark.parametrize(("argv", "json_line"), [
    (["evaluate", "no-such-run", "--js", "--threads", "abc"], True),   # argparse's prefix
    (["serve", "--json"], False),                  # serve has no --json: no JSON line
    (["predict", "no-such-run", "--bogus", "--", "--json"], False),    # a picture's name
])
def test_json_is_read_as_argparse_reads_it(capsys: pytest.CaptureFixture[str], argv: list[str],
                                           json_line: bool) -> None:
    assert main(argv) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert (bool(out) and json.loads(out[-1])["exit_code"] == 2) == json_line


def test_an_uncalibrated_run_with_a_validation_split_is_told_to_calibrate(tmp_path):
    # it was told to train again with --validation N, which it already had
    from types import SimpleNamespace

    from mnistlab import runs
    from mnistlab.cli.use import _uncalibrated_note
    from mnistlab.train.config import TrainConfig

    for validation in (5000, 0):
        run_dir = tmp_path / f"fc-{validation}"
        run_dir.mkdir()
        runs.write_config(run_dir, runs.RunConfig(
            model="fc", train=TrainConfig(model="fc", validation=validation)))
        note = _uncalibrated_note(SimpleNamespace(name=str(run_dir)))
        if validation:
            assert f"mnistlab calibrate {run_dir}" in note
        else:
            assert "train with --validation N" in note


def test_json_closes_even_when_interrupted_during_start_up(monkeypatch, capsys):
    import json

    from mnistlab import cli

    def interrupted(argv):
        raise KeyboardInterrupt                    # as Ctrl-C during torch's import

    monkeypatch.setattr(cli, "_main", interrupted)
    assert cli.main(["train", "cnn", "--json"]) == 130
    assert json.loads(capsys.readouterr().out) == {"error": "interrupted", "exit_code": 130}
