"""`mnistlab report --quick` on a small subset: files, figures, numbers, self-contained HTML.

The report is built once per session (about 30 s on two busy cores) and every test reads it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from mnistlab import runs
from mnistlab.cli import main
from mnistlab.report import analysis as A
from mnistlab.report import findings, fmt
from mnistlab.report.schema import Curves, ModelStudy

LIMIT = 2_000        # training images per model
TEST_LIMIT = 1_000   # test images
LOOP_STEPS = 60      # custom-loop iterations


def _small_report(out, *flags: str) -> tuple[int, str]:
    """`mnistlab report --quick` on the small subsets into ``out``: exit code and stdout."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["report", "--quick", "--epochs", "1", "--limit", str(LIMIT),
                     "--test-limit", str(TEST_LIMIT), "--threads", "1",
                     "--loop-steps", str(LOOP_STEPS), "--out", str(out), *flags])
    return code, stdout.getvalue()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    code, text = _small_report(out, "--device", "cpu", "--json")
    assert code == 0
    return out, text


@pytest.fixture(scope="session")
def report(built):
    return json.loads((built[0] / "report.json").read_text())


@pytest.fixture(scope="session")
def markdown(built):
    return (built[0] / "REPORT.md").read_text()


def test_terminal_shows_stages_and_ends_with_json(built):
    out, stdout = built
    assert re.search(r"\[1/\d+\] data", stdout)
    assert "report written in" in stdout
    last = json.loads(stdout.strip().splitlines()[-1])
    assert last["report_md"] == str(out / "REPORT.md")
    assert set(last["models"]) == {"fc", "cnn"}


@pytest.mark.timeout(120)
def test_every_referenced_figure_is_a_valid_png(built, markdown):
    out = built[0]
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(refs) >= 8 and len(set(refs)) == len(refs)
    assert "figures/fig5_prediction_grid.png" in refs
    assert "figures/fig6_custom_loop_loss.png" in refs
    for ref in refs:
        path = out / ref
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", ref
        with Image.open(path) as im:
            im.verify()


def test_numbers_in_the_report_equal_the_runs_metrics(built, report, markdown):
    out = built[0]
    assert len(report["runs"]) == 2
    for row in report["runs"]:
        metrics = json.loads((out / row["run_dir_rel"] / "metrics.json").read_text())
        history = json.loads((out / row["run_dir_rel"] / "history.json").read_text())
        for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "parameters"):
            assert row[key] == metrics[key], key
        assert metrics["train_images"] == LIMIT and len(history) == 1
        assert metrics["test_images"] == TEST_LIMIT
        # The per-seed table row shows exactly these values, formatted.
        line = next(x for x in markdown.splitlines()
                    if x.startswith(f"| {row['model'].upper()} | {row['seed']} |"))
        for text in (fmt.pct(metrics["test_accuracy"]), fmt.loss(metrics["test_loss"]),
                     fmt.frac(metrics["train_accuracy"]), fmt.loss(metrics["train_loss"])):
            assert f"| {text} |" in line, (text, line)
        m = report["models"][row["model"]]
        assert m["test_accuracy"]["mean"] == metrics["test_accuracy"]
        assert m["parameters"] == metrics["parameters"]
        assert f"Total params: {metrics['parameters']:,}" in markdown
        assert f"accuracy: {metrics['test_accuracy']:.4f}  loss: {metrics['test_loss']:.4f}" \
            in markdown
    fc, cnn = (next(r for r in report["runs"] if r["model"] == m) for m in ("fc", "cnn"))
    imp = report["comparison"]["improvement"]["mean"]
    assert imp == pytest.approx(cnn["test_accuracy"] - fc["test_accuracy"])
    assert f"beat it by {fmt.pts(imp)} points" in markdown
    assert "101,770" in markdown and "438,026" in markdown


def test_grid_and_mistakes_are_consistent(report):
    grid = report["grid"]
    assert len(grid["indices"]) == 20 and grid["indices"] == sorted(grid["indices"])
    assert 0 <= grid["cnn"]["correct"] <= 20
    confs = [m["confidence"] for m in grid["mistakes"]]
    assert confs == sorted(confs, reverse=True)
    assert all(m["true"] != m["pred"] for m in grid["mistakes"])
    cm = np.asarray(report["models"]["cnn"]["confusion"])
    assert cm.sum() == report["meta"]["test_images"]
    assert cm.sum() - np.trace(cm) >= len(grid["mistakes"])


def test_the_loop_ran_and_is_reported(built, report, markdown):
    loop = report["loop"]
    assert loop["steps"] == LOOP_STEPS and loop["batch_size"] == 12
    metrics = json.loads((built[0] / loop["run_dir_rel"] / "metrics.json").read_text())
    assert metrics["steps"] == LOOP_STEPS
    assert metrics["smoothed_last"] == loop["smoothed_end"]
    assert metrics["test_accuracy"] == loop["test_accuracy"]
    assert fmt.loss(loop["smoothed_end"]) in markdown
    assert f"Test accuracy after the loop: {fmt.pct(metrics['test_accuracy'])}" in markdown


def test_html_is_self_contained(built, report):
    html = (built[0] / "report.html").read_text()

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.urls, self.images = [], 0

        def handle_starttag(self, tag, attrs):
            for name, value in attrs:
                if name in ("src", "href", "srcset", "action", "data") and value:
                    self.urls.append(value)
            self.images += tag == "img"

    parser = Links()
    parser.feed(html)
    assert parser.images == len(report["figures"])
    assert all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "@import" not in html


def test_run_folders_stay_usable(built):
    from mnistlab.runs import load_model
    from mnistlab.train.phases import predict_proba

    model = load_model(built[0] / "runs" / "cnn-seed0")
    probs = predict_proba(model, np.zeros((3, 28, 28), dtype=np.uint8))
    assert probs.shape == (3, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert main(["report", "--out", str(afile)]) == 2
    assert main(["report", "--seeds", "0", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def _fc(test_loss, gap):
    """A one-seed ModelStudy with these test losses per epoch and this train-test gap; the
    fields the overfitting verdict does not read are placeholders."""
    n = len(test_loss)
    cm = np.eye(10, dtype=np.int64) * 100
    one = A.summarize([0.9])
    return ModelStudy(
        parameters=1, mult_adds_per_image=1, summary_text="", precision="fp32", n_seeds=1,
        test_accuracy=one, test_loss=one, train_accuracy=one, train_loss=one,
        train_accuracy_measured=one, gap_keras=A.summarize([gap]),
        gap_measured=A.summarize([gap]), ece=one, train_seconds=one,
        curves=Curves(train_accuracy=[[0.9] * n], test_accuracy=[[0.9] * n],
                      train_loss=[[1.0 - 0.1 * i for i in range(n)]], test_loss=[test_loss]),
        log_seed=0, log_lines=[], eval_line="", confusion=cm,
        per_class_accuracy=[1.0] * 10, most_confused=[], errors_per_seed=0.0,
        calibration=A.calibration(np.eye(10), np.arange(10)),
        test_interval_first_seed=(0.8, 0.95))


def test_overfitting_verdict_follows_the_curves():
    falling = findings._overfitting_claim(_fc([0.3, 0.2, 0.15], 0.005))
    assert falling.verdict == "not supported" and "still falling" in falling.evidence
    rising = findings._overfitting_claim(_fc([0.3, 0.2, 0.25], 0.03))
    assert rising.verdict == "supported" and "epoch 2" in rising.evidence
    # A CNN whose test loss turns up is named as the one that starts to overfit.
    both = findings._overfitting_claim(_fc([0.3, 0.2, 0.15], 0.005), _fc([0.1, 0.05, 0.06], 0))
    assert both.verdict == "not supported" and "the CNN's, not the FC's" in both.evidence


def test_a_difference_is_supported_only_when_its_interval_clears_zero(report):
    # one seed's 0.15-point gap difference read "supported"; now only an interval that lies
    # wholly on one side of zero decides
    assert findings._by_interval(A.summarize([0.0015])) == "inconclusive"      # one seed
    assert findings._by_interval(A.summarize([0.01, 0.012, 0.011])) == "supported"
    assert findings._by_interval(A.summarize([-0.01, -0.012, -0.011])) == "not supported"
    assert findings._by_interval(A.summarize([0.01, -0.012, 0.002])) == "inconclusive"
    claims = {c["claim"]: c for c in report["claims"]}
    gap = next(c for k, c in claims.items() if "gap between training and test" in k)
    assert gap["verdict"] == "inconclusive" and "one seed" in gap["evidence"]   # --quick: 1
    for claim in report["claims"]:
        assert claim["verdict"] in ("supported", "not supported", "mixed", "inconclusive")


def test_report_json_is_the_typed_report(built, report):
    # Provenance sits inside meta; an empty grid or comparison is written as {}.
    meta = report["meta"]
    assert list(meta)[:3] == ["train_images", "test_images", "seeds"]
    assert {"config", "started", "total_seconds", "stage_seconds", "versions",
            "command"} <= set(meta)
    assert "provenance" not in report and "figure" not in report["loop"]
    assert list(report) == ["meta", "runs", "models", "comparison", "grid", "loop",
                            "seed_vs_run", "claims", "conclusions", "figures"]
    assert set(report["figures"]["reliability"]) == {"path", "caption"}
    assert set(report["claims"][0]) == {"claim", "verdict", "evidence"}
    cal = report["models"]["cnn"]["calibration"]
    assert len(cal["bins"]) == cal["n_bins"] and set(cal["bins"][0]) == {
        "low", "high", "count", "accuracy", "confidence"}
    assert set(report["models"]["fc"]["test_accuracy"]) == {
        "n", "mean", "std", "ci_low", "ci_high", "confidence", "half_width"}


def test_the_command_line_does_not_import_the_study():
    # `mnistlab --help` builds every parser, the report's too: it must stay instant, so the
    # report's defaults are read without torch, matplotlib or scipy.
    code = ("import sys, mnistlab.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy', 'jinja2') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "[]"


def test_the_report_records_its_device(built, report, markdown):
    meta = report["meta"]
    assert meta["device"] == "cpu" and meta["config"]["device"] == "cpu"
    assert "--device cpu" in meta["command"] and "trained on cpu" in markdown
    for name in ("fc-seed0", "cnn-seed0"):
        config = runs.read_config(built[0] / "runs" / name)
        assert config.train.device == "cpu" and config.environment.device == "cpu"
    assert runs.read_config(built[0] / "runs" / "loop-seed0").environment.device == "cpu"


def test_device_cuda_without_one_is_one_line_and_writes_nothing(tmp_path, capsys,
                                                                monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "never"
    code, text = _small_report(out, "--device", "cuda")
    assert code == 2 and text == ""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert not out.exists()


def test_a_report_stopped_half_way_leaves_the_earlier_one_whole(built, tmp_path,
                                                                monkeypatch):
    # it deleted the earlier report's files at its start and each run it retrained: stopped
    # (Ctrl-C, SIGTERM) after retraining, the last good report and its runs were gone
    from mnistlab.report import build

    out = tmp_path / "report"
    shutil.copytree(built[0], out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_custom_loop", stopped)     # after both runs were retrained
    code, text = _small_report(out)
    assert code == 130 and "Epoch 1/1" in text
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before                                   # byte for byte, nothing added


def test_a_report_killed_outright_is_undone_by_the_next(tmp_path):
    from mnistlab.report.aside import ASIDE, SetAside

    out = tmp_path / "report"
    (out / "runs" / "fc-seed0").mkdir(parents=True)
    (out / "runs" / "fc-seed0" / "model.safetensors").write_bytes(b"old weights")
    (out / "REPORT.md").write_text("the old report")
    killed = SetAside(out)
    killed.keep(out / "REPORT.md")
    killed.keep(out / "runs" / "fc-seed0")
    (out / "runs" / "fc-seed0").mkdir()                      # half made when it was killed
    (out / "runs" / "fc-seed0" / "config.json").write_text("{}")
    SetAside(out)                                            # the next report, at its start
    assert (out / "REPORT.md").read_text() == "the old report"
    assert [p.name for p in (out / "runs" / "fc-seed0").iterdir()] == ["model.safetensors"]
    assert not (out / ASIDE).exists()


def test_reuse_redraws_from_the_finished_runs(built, report):
    # Last in the file: it re-writes the session's report (with the same numbers).
    out = built[0]
    code, text = _small_report(out, "--reuse")
    assert code == 0
    assert text.count("reusing ") == 3 and "Epoch 1/1" not in text
    again = json.loads((out / "report.json").read_text())
    assert [r["test_accuracy"] for r in again["runs"]] == \
        [r["test_accuracy"] for r in report["runs"]]
    assert again["models"]["cnn"]["confusion"] == report["models"]["cnn"]["confusion"]
    assert again["loop"]["smoothed_end"] == report["loop"]["smoothed_end"]
    assert "re-drawn with `--reuse`" in (out / "REPORT.md").read_text()


def test_the_recorded_command_names_the_executor(tmp_path):
    """REPORT.md's first line must repeat the report: where its seeds trained is part of it."""
    from mnistlab.report.build import ReportConfig, _command

    ray = _command(ReportConfig(seeds=10, executor="ray", address="10.0.0.1:6379", out=tmp_path))
    assert "--seeds 10 --executor ray --address 10.0.0.1:6379" in ray
    assert "--executor" not in _command(ReportConfig(seeds=10, out=tmp_path))


def test_quick_keeps_the_seeds_asked_for_and_the_command_no_machine_path(tmp_path, monkeypatch):
    from mnistlab.report.build import ReportConfig, _command

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MNISTLAB_REPORT_DIR", raising=False)
    asked = ReportConfig(quick=True, seeds=2, out=tmp_path / "report").quick_defaults()
    assert asked.seeds == 2
    assert _command(asked) == "mnistlab report --quick --seeds 2"        # default folder
    one = ReportConfig(quick=True, seeds=1, out=tmp_path / "report").quick_defaults()
    assert _command(one) == "mnistlab report --quick"
    mine = _command(ReportConfig(seeds=3, out=tmp_path / "study" / "v2"))
    assert mine.endswith("--out study/v2") and str(tmp_path) not in mine


def test_the_cnn_recipe_names_the_precision_it_trained_in(built, report, markdown):
    # bf16 where the CPU has it natively, else fp32: the text says which, not always bf16
    precision = report["models"]["cnn"]["precision"]
    assert precision in ("bf16", "fp32")
    assert f"CNN: Adam 1e-3, {precision} (bf16 where the CPU has it natively)" in markdown
