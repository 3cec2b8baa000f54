"""`mnistlab sweep` from the command line without Ray: bad specs, the missing extra, and the
in-process executor (a sweep, its resume, its run folders as ordinary runs)."""

from __future__ import annotations

import builtins
import json

import pytest

from mnistlab.cli import main

SMALL = ["fc", "--seeds", "2", "--grid", "lr=0.05,0.1", "--limit", "1000", "--test-limit",
         "500", "--epochs", "2", "--executor", "local", "--quiet"]


@pytest.mark.parametrize("args, message", [
    (["fc", "--grid", "colour=red"], "unknown training setting"),
    (["fc", "--grid", "lr=abc"], "is not a float"),
    (["fc", "--grid", "lr="], "has no values"),
    (["fc", "--concurrency", "0"], "--concurrency must be at least 1"),
    (["fc", "--seeds", "0"], "--seeds must be at least 1"),
    (["fc", "--grid", "epochs=1,2", "--epochs", "1"], "both set epochs; give it once"),
    (["fc", "--executor", "local", "--threads-per-trial", "999"], "more than this machine's"),
    # ignored in silence by the local executor
    (["fc", "--executor", "local", "--gpus-per-trial", "1"], "goes with --executor ray"),
    # a local Ray: refused before Ray starts, where it took 15 s and left an empty folder
    (["fc", "--threads-per-trial", "999"], "a local Ray runs its trials here"),
    (["nope"], "unknown model"),
    (["fc", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["fc", "--address", "nowhere"], "expected auto or HOST:PORT"),
])
def test_bad_spec_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    if "--address" in args:
        pytest.importorskip("ray")
    assert main(["sweep", *args, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "s").exists()                 # nothing was started


def test_a_gpu_per_trial_on_a_machine_without_one_is_refused_before_ray(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["sweep", "fc", "--gpus-per-trial", "1", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this machine has none" in err[0], err
    assert not (tmp_path / "s").exists()


def test_without_ray_it_names_the_install_command(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", "fc", "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: mnistlab sweep needs Ray, an optional extra: " \
                  "pip install 'mnistlab[sweep]'"


def _no_ray_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.sweep import executor

    def refuse(self, settings):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(executor.RayExecutor, "__init__", refuse)


def test_local_sweep_writes_runs_that_other_commands_read(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    assert main(["sweep", *SMALL, "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["trials"]) == 4 and all(t["state"] == "done" for t in result["trials"])
    assert {"settings", "seed", "test_accuracy", "run_dir", "node"} <= set(result["trials"][0])
    assert [g["settings"]["lr"] for g in result["groups"]] in ([0.1, 0.05], [0.05, 0.1])
    assert {"settings", "n", "mean_test_accuracy", "std", "ci95"} <= set(result["groups"][0])
    for name in ("sweep.json", "summary.md", "summary.csv", "summary.png"):
        assert (out / name).is_file()
    run = result["trials"][0]["run_dir"]
    assert main(["evaluate", run, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["test_accuracy"] > 0.5
    assert main(["evaluate", "--ensemble", *(t["run_dir"] for t in result["trials"])]) == 0

    # a finished sweep resumed trains nothing again
    mtimes = {t["id"]: (out / t["id"] / "metrics.json").stat().st_mtime_ns
              for t in result["trials"]}
    capsys.readouterr()
    assert main(["sweep", "--resume", str(out), "--executor", "local", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [t["test_accuracy"] for t in again["trials"]] == \
        [t["test_accuracy"] for t in result["trials"]]
    assert mtimes == {t: (out / t / "metrics.json").stat().st_mtime_ns for t in mtimes}
    # ... and starts no Ray for it (some 15 s to do nothing)
    _no_ray_start(monkeypatch)
    assert main(["sweep", "--resume", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "nothing to resume" in lines[0] and json.loads(lines[-1])["counts"]["done"] == 4


def test_local_sweep_resumes_an_unfinished_trial_from_its_checkpoint(tmp_path, capsys):
    from mnistlab.sweep import record as records

    out = tmp_path / "sweep"
    assert main(["sweep", *SMALL, "--out", str(out)]) == 0
    # as if the driver had died mid-trial: one run folder back to after epoch 1
    rec = records.read(out)
    victim = out / rec.trials[1].id
    done = json.loads((victim / "metrics.json").read_text())
    (victim / "metrics.json").unlink()
    rec.trials[1].state = "running"
    rec.write(out)
    capsys.readouterr()
    assert main(["sweep", "--resume", str(out), "--executor", "local", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["counts"]["done"] == 4
    assert json.loads((victim / "metrics.json").read_text())["test_accuracy"] == \
        done["test_accuracy"]


def test_out_holding_a_sweep_points_at_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "s"
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    assert main(["sweep", *SMALL, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    _no_ray_start(monkeypatch)             # on Ray too, said before Ray starts
    assert main(["sweep", "fc", "--seeds", "1", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_a_sweep_with_failed_trials_exits_1_and_says_so(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["sweep", "fc", "--seeds", "1", "--grid", "lr=0.1,1e30", "--limit", "300",
                 "--test-limit", "100", "--epochs", "1", "--executor", "local", "--quiet",
                 "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "1 of 2 trials failed" in captured.err   # lr 1e30 diverges
    assert json.loads(captured.out.strip().splitlines()[-1])["counts"]["failed"] == 1


def test_a_sweep_stopped_before_it_starts_leaves_no_empty_folder(tmp_path, capsys, monkeypatch):
    # stopped while Ray checked the folder (before any trial), --out stayed behind, empty
    from mnistlab.sweep import executor

    def interrupted(self, root):
        raise KeyboardInterrupt

    monkeypatch.setattr(executor.LocalExecutor, "check_storage", interrupted)
    out = tmp_path / "s"
    assert main(["sweep", *SMALL, "--out", str(out), "--json"]) == 130
    assert not out.exists()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["exit_code"] == 130

