"""Groups over seeds, their intervals, summary.md/csv and the figure, from a made-up record."""

from __future__ import annotations

import csv
import io

import pytest

from mnistlab.report.analysis import summarize
from mnistlab.sweep import summary
from mnistlab.sweep.record import SweepRecord
from mnistlab.sweep.spec import SweepSpec
from mnistlab.sweep.trial import TrialMetrics, TrialOutcome


def _record() -> SweepRecord:
    spec = SweepSpec(models=["fc"], seeds=[0, 1, 2], grid={"lr": [0.01, 0.1]})
    record = SweepRecord.new(spec, spec.trials(), "local")
    acc = {"fc-lr0.01-s0": 0.921, "fc-lr0.01-s1": 0.925, "fc-lr0.01-s2": 0.923,
           "fc-lr0.1-s0": 0.968, "fc-lr0.1-s1": 0.970}
    for trial_id, a in acc.items():
        record.apply(TrialOutcome(trial_id, "host:1", 1.0, 0,
                                  TrialMetrics(a, 0.1, a, 0.1, 5, 1.0, "fp32")))
    record.apply(TrialOutcome("fc-lr0.1-s2", "host:1", 1.0, 0, error="diverged"))
    return record


def test_groups_best_first_with_the_report_s_interval():
    groups = summary.groups(_record())
    assert [g.settings for g in groups] == [{"lr": 0.1}, {"lr": 0.01}]
    best = groups[0]
    assert best.n == 2 and best.mean_test_accuracy == pytest.approx(0.969)
    s = summarize([0.968, 0.970])
    assert best.std == pytest.approx(s.std) and best.ci95 == (s.ci_low, s.ci_high)
    assert best.to_dict()["settings"] == {"model": "fc", "lr": 0.1}


def test_summary_files(tmp_path):
    record = _record()
    summary.write_all(record, tmp_path)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert [r["lr"] for r in rows] == ["0.1", "0.01"] and rows[1]["n"] == "3"
    md = (tmp_path / "summary.md").read_text()
    assert "| 1 | fc lr=0.1 | 2 | 96.90 |" in md
    assert "fc-lr0.1-s2: failed (diverged)" in md
    assert (tmp_path / "summary.png").stat().st_size > 5000
