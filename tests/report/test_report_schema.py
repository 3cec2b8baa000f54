"""schema: the typed report writes report.json's shape (keys, order, absent parts)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mnistlab.report import analysis as A
from mnistlab.report.schema import Grid, LoopStudy, Meta, Mistake, Report


def _loop() -> LoopStudy:
    return LoopStudy(steps=10, planned_steps=10, batch_size=12, lr=0.01, optimizer="plain SGD",
                     smoothing=0.95, seed=0, train_images=120, threads=1, seconds=0.5,
                     loss_first=2.3, loss_last=2.0, smoothed_start=2.3, smoothed_end=2.1,
                     decreasing_share=None, test_accuracy=None, test_loss=None,
                     run_dir=Path("out/runs/loop-seed0"), run_dir_rel="runs/loop-seed0",
                     figure=Path("out/figures/fig6.png"))


def test_grid_without_fc_has_no_fc_key():
    stats = A.sample_stats([[0.9, 0.1], [0.2, 0.8]], [0, 0])
    grid = Grid(model="cnn", seed=0, indices=[3, 7], draw_seed=0, cnn=stats,
                mistakes=[Mistake(index=7, true=0, pred=1, confidence=0.8)],
                seed_grid_accuracy=1.0)
    d = grid.to_dict()
    assert list(d) == ["model", "seed", "indices", "draw_seed", "cnn", "mistakes",
                       "seed_grid_accuracy"]
    assert d["mistakes"] == [{"index": 7, "true": 0, "pred": 1, "confidence": 0.8}]
    assert list(replace(grid, fc=stats).to_dict())[-1] == "fc"


def test_report_without_comparison_grid_or_provenance():
    r = Report(meta=Meta(train_images=120, test_images=10, seeds=[0]), runs=[], models={},
               comparison=None, grid=None, loop=_loop(), seed_vs_run=[], claims=[],
               conclusions=[])
    d = r.to_dict()
    assert list(d) == ["meta", "runs", "models", "comparison", "grid", "loop", "seed_vs_run",
                       "claims", "conclusions", "figures"]
    assert d["comparison"] == {} and d["grid"] == {} and d["figures"] == {}
    assert d["meta"] == {"train_images": 120, "test_images": 10, "seeds": [0]}
    # Paths are written as strings; the loop's figure path stays out of report.json.
    assert d["loop"]["run_dir"] == str(Path("out/runs/loop-seed0"))
    assert "figure" not in d["loop"]


def test_footer_names_the_threads_the_models_trained_on():
    # A report on Ray: its trials trained on 1 thread each, the driver ran on 2; the footer
    # named the driver's 2 alone.
    from mnistlab.report import provenance
    from mnistlab.report.document import _provenance_blocks

    def footer(train_threads: list[int]) -> tuple[list[int], str]:
        prov = provenance.collect(config={}, command="mnistlab report", threads=2, started=0.0,
                                  t0=0.0, stage_seconds={}, train_threads=train_threads)
        return prov.train_threads, _provenance_blocks(prov)[-1].text

    recorded, text = footer([1, 1, 1, 1])
    assert recorded == [1] and "the models on 1 thread(s) each, the rest on 2" in text
    recorded, text = footer([2, 2, 0])        # as the report's own: said once
    assert recorded == [] and "; 2 thread(s) on" in text
