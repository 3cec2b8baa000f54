"""Export never loses a good file (issue 16): an unrelated --out is refused, a failed parity
check leaves the previous model.onnx, a kill -9 at any moment leaves it too, and a model that
answers NaN is refused by predict instead of printing `0 (nan%)`."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
import torch

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab import runs
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.inference.export import MARKER, export_onnx, export_run, is_mnistlab_onnx
from mnistlab.models import build_model


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def nan_model() -> torch.nn.Module:
    """An FC whose weights diverged: every output is NaN, in PyTorch and in ONNX alike."""
    model = build_model("fc")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return model.eval()


@pytest.fixture
def run_with_good_onnx(trained_run, tmp_path):  # noqa: F811
    """A copy of the trained run, with a checked model.onnx exported from it."""
    run = tmp_path / "runs" / "fc-copy"
    shutil.copytree(trained_run, run)
    assert export_run(run)["ok"]
    return run


def break_weights(run: Path) -> None:
    runs.save_weights(run / runs.WEIGHTS, nan_model(), "fc", {})


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_export_refuses_to_replace_a_file_that_is_not_ours(trained_run, tmp_path, capsys):  # noqa: F811
    notes = tmp_path / "notes.txt"
    notes.write_text("three weeks of lab notes\n")
    assert main(["export", str(trained_run), "--out", str(notes)]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert line.startswith("error: ") and "not an ONNX model written by mnistlab" in line
    assert "--force" in line
    assert notes.read_text() == "three weeks of lab notes\n"
    # A folder is refused whatever the flags.
    assert main(["export", str(trained_run), "--out", str(tmp_path), "--force"]) == 2
    assert "is a folder" in capsys.readouterr().err
    # --force replaces it; and re-exporting over our own model needs no flag.
    assert main(["export", str(trained_run), "--out", str(notes), "--force"]) == 0
    assert is_mnistlab_onnx(notes)
    assert main(["export", str(trained_run), "--out", str(notes)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]   # no partial file left


def test_models_of_older_exports_are_recognised_and_others_are_not(trained_run, tmp_path):  # noqa: F811
    ours = tmp_path / "ours.onnx"
    export_onnx(runs.load_model(trained_run), ours)
    proto = onnx.load(str(ours))
    assert any(p.key == MARKER for p in proto.metadata_props)
    del proto.metadata_props[:]                     # as written before the mark existed,
    del proto.graph.output[1:]                      # which was before the features output
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert is_mnistlab_onnx(ours) and is_mnistlab_onnx(tmp_path / "old.onnx")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "other.onnx"))
    assert not is_mnistlab_onnx(tmp_path / "other.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "junk.onnx").write_bytes(b"\x08" + os.urandom(200))
    assert not is_mnistlab_onnx(tmp_path / "empty.onnx")
    assert not is_mnistlab_onnx(tmp_path / "junk.onnx")


def test_a_failed_parity_check_keeps_the_good_model(run_with_good_onnx, capsys):
    run = run_with_good_onnx
    good = sha(run / "model.onnx")
    before = sorted(p.name for p in run.iterdir())
    break_weights(run)
    assert main(["export", str(run), "--json"]) == 2
    out, err = capsys.readouterr()
    (line,) = error_lines(err)
    assert line.startswith("error: the ONNX export does not match PyTorch")
    assert "left as it was" in line
    assert json.loads(out.strip().splitlines()[-1])["written"] is False
    assert sha(run / "model.onnx") == good
    assert sorted(p.name for p in run.iterdir()) == before   # no partial file left


def test_predict_refuses_a_model_that_answers_nan(tmp_path, capsys):
    path = export_onnx(nan_model(), tmp_path / "nan.onnx")
    images, _ = load_dataset("mnist", "test")
    picture = tmp_path / "d.png"
    picture.write_bytes(png_bytes(render_mnist(images[0])))
    assert main(["predict", "--onnx", str(path), str(picture)]) == 2
    out, err = capsys.readouterr()
    assert "nan%" not in out.lower()
    (line,) = error_lines(err)
    assert line.startswith("error: ") and "NaN" in line and "re-export" in line


def _export_cmd(run: Path) -> list[str]:
    return [sys.executable, "-m", "mnistlab", "export", str(run)]


@pytest.mark.timeout(400)
def test_kill_9_at_any_moment_leaves_the_good_model(run_with_good_onnx):
    """The run's weights are broken, so no export of them may ever replace its good
    model.onnx: whatever moment `mnistlab export` is killed at, model.onnx is the old one and
    nothing half-written sits where a later command would read it."""
    run = run_with_good_onnx
    good = sha(run / "model.onnx")
    before = sorted(p.name for p in run.iterdir())
    break_weights(run)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # One whole export first: it must refuse (exit 2) and it tells how long an export takes.
    start = time.monotonic()
    whole = subprocess.run(_export_cmd(run), capture_output=True, text=True, timeout=180,
                           env=env)
    duration = time.monotonic() - start
    assert whole.returncode == 2, whole.stderr
    assert sha(run / "model.onnx") == good
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    # One random moment in each fifth of an export: start-up, export, check, rename.
    delays = [duration * (i + rng.random()) / 5 for i in range(5)]
    for delay in delays:
        proc = subprocess.Popen(_export_cmd(run), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        where = f"(seed {seed}, killed after {delay:.2f} s of {duration:.2f} s)"
        assert sha(run / "model.onnx") == good, where
        extra = sorted(set(p.name for p in run.iterdir()) - set(before))
        # Only a hidden partial file named after its process may be left.
        assert all(n.startswith(".model.onnx.") and n.endswith(".partial") for n in extra), \
            (extra, where)
    # The next export removes what killed ones left.
    again = subprocess.run(_export_cmd(run), capture_output=True, text=True, timeout=180,
                           env=env)
    assert again.returncode == 2, again.stderr
    assert sha(run / "model.onnx") == good
    assert sorted(p.name for p in run.iterdir()) == before
