"""The report's text and tables as blocks (``blocks.Document``), built once from the report's
numbers; ``render`` turns the same blocks into REPORT.md and report.html, so the two always say
the same thing.
"""

from __future__ import annotations

from collections.abc import Callable

from mnistlab.report import fmt
from mnistlab.report.blocks import Block, Document, FigureBlock, Section
from mnistlab.report.blocks import BulletList as ul
from mnistlab.report.blocks import Code as code
from mnistlab.report.blocks import Paragraph as p
from mnistlab.report.blocks import Table as table
from mnistlab.report.schema import LoopStudy, Meta, ModelStudy, Provenance, Report
from mnistlab.report.seed import SEED

# The blocks of one figure by name: none when it was not drawn.
FigureLookup = Callable[[str], list[Block]]


def build(r: Report) -> Document:
    """The whole document; ``r`` must carry its figures and provenance (``build_report`` adds
    both before writing)."""
    if r.provenance is None:
        raise ValueError("the report has no provenance yet: add it before building the text")
    prov = r.provenance

    def fig(name: str) -> list[Block]:
        f = r.figures.get(name)
        return [FigureBlock(name=name, path=f.path, caption=f.caption)] if f else []

    sections = [
        Section("Conclusions", [ul(r.conclusions)]),
        Section("The seed report against this run",
                [p("Every number the seed report states, beside this run's measurement "
                   f"(mean ± standard deviation over {len(r.meta.seeds)} seed(s) where "
                   "several runs exist)."),
                 table(["quantity", "seed report", "this run", "note"],
                       [[x.item, x.seed, x.this_run, x.note] for x in r.seed_vs_run])]),
    ]
    for name, fig_no, title in (("fc", (1, 2), "The fully connected baseline"),
                                ("cnn", (3, 4), "The convolutional network")):
        if name in r.models:
            sections.append(Section(title, _model_blocks(name, r.models[name], fig_no, r)))
    if r.comparison:
        sections.append(Section("FC against CNN over seeds",
                                _comparison_blocks(r) + fig("learning_curves")
                                + fig("seed_comparison") + _claim_blocks(r, 0, 2)))
    if r.grid:
        sections.append(Section("Predictions", _grid_blocks(r, fig)))
    if r.loop.steps:
        sections.append(Section("The explicit training loop",
                                _loop_blocks(r.loop) + fig("fig6_custom_loop_loss")))
    sections.append(Section("Beyond the seed: errors by class and calibration",
                            _errors_blocks(r, fig)))
    sections.append(Section("The seed's claims, tested",
                            [table(["claim", "verdict", "evidence"],
                                   [[c.claim, c.verdict, c.evidence] for c in r.claims])]))
    sections.append(Section("How this report was made", _provenance_blocks(prov)))
    return Document(title="MNIST: a fully connected network against a CNN, reproduced",
                    subtitle=_subtitle(r.meta, prov), sections=sections)


def _subtitle(meta: Meta, prov: Provenance) -> str:
    return (f"`{prov.command}`: {len(meta.seeds)} seed(s), "
            f"{fmt.count(meta.train_images)} training and {fmt.count(meta.test_images)} "
            f"test images; started {prov.started}, took {fmt.seconds(prov.total_seconds)} "
            f"on {prov.cpu_count} CPU core(s) (load average {prov.load_average[0]:.2f} at "
            "the end).")


def _model_blocks(name: str, m: ModelStudy, fig_no: tuple[int, int], r: Report) -> list[Block]:
    first = r.runs_of(name)[0]
    log = "\n".join([*m.log_lines, m.eval_line, "",
                     f"Test accuracy: {first.test_accuracy}"])
    return [
        code(m.summary_text, f"Figure {fig_no[0]}: {name.upper()} architecture summary: "
                             f"{fmt.count(m.parameters)} parameters, "
                             f"{fmt.count(m.mult_adds_per_image)} multiply-adds per image."),
        code(log, f"Figure {fig_no[1]}: training log (seed {m.log_seed}, {m.precision}) "
                  f"and the test evaluation: test accuracy {fmt.pct(first.test_accuracy)}, "
                  f"test loss {fmt.loss(first.test_loss)}. Each epoch's accuracy and loss are "
                  "running means over its batches, as Keras prints them; val_* is the test set "
                  "after the epoch."),
    ]


def _comparison_blocks(r: Report) -> list[Block]:
    models, comp = r.models, r.comparison
    assert comp is not None  # only called when both models were trained
    rows = []
    for x in r.runs:
        rows.append([x.model.upper(), str(x.seed), fmt.pct(x.test_accuracy),
                     fmt.loss(x.test_loss), fmt.frac(x.train_accuracy),
                     fmt.loss(x.train_loss), fmt.pct(x.train_accuracy_measured),
                     fmt.pts(x.gap_measured), fmt.pct(x.ece),
                     fmt.seconds(x.train_seconds), f"`{x.run_dir_rel}`"])
    per_seed = table(["model", "seed", "test acc.", "test loss", "train acc. (Keras)",
                      "train loss", "train acc. (re-measured)", "gap (points)", "ECE",
                      "train time", "run folder"], rows)
    fc, cnn = models["fc"], models["cnn"]
    summary_rows = [
        [label, f"{fmt.mean_sd(f, scale)} {fmt.interval(f, scale)}",
         f"{fmt.mean_sd(c, scale)} {fmt.interval(c, scale)}"]
        for label, scale, f, c in (
            ("test accuracy", "pct", fc.test_accuracy, cnn.test_accuracy),
            ("test loss", "loss", fc.test_loss, cnn.test_loss),
            ("train accuracy (re-measured)", "pct", fc.train_accuracy_measured,
             cnn.train_accuracy_measured),
            ("train - test gap (points)", "pts", fc.gap_measured, cnn.gap_measured),
            ("gap, Keras-style train accuracy (points)", "pts", fc.gap_keras, cnn.gap_keras),
            ("expected calibration error", "pct", fc.ece, cnn.ece))]
    imp = comp.improvement
    fc_ci, cnn_ci = fc.test_interval_first_seed, cnn.test_interval_first_seed
    return [
        p("Each model trained with the seed's recipe (FC: SGD, learning rate 0.1, fp32; CNN: "
          f"Adam 1e-3, {cnn.precision} (bf16 where the CPU has it natively) through the "
          "engine `--engine auto` measured fastest here, recorded in each run's config.json; "
          "batch 64) once per seed. The seed "
          "sets the weight initialisation and the batch order; the FC and CNN runs of one seed "
          "share the batch order, so differences are paired by seed."),
        per_seed,
        p("Mean ± standard deviation over seeds, then the 95% confidence interval of the mean "
          "(t distribution, n - 1 degrees of freedom):"),
        table(["", "FC", "CNN"], summary_rows),
        p(f"Improvement of the CNN over the FC baseline, paired by seed: "
          f"{fmt.mean_sd(imp, 'pts')} points, 95% CI {fmt.interval(imp, 'pts')} "
          f"(the seed report: {SEED['improvement_points']:.2f} points from one run each). "
          f"Test-set sampling alone ({fmt.count(r.meta.test_images)} images) puts a "
          "95% Wilson interval of "
          f"{fmt.pct(fc_ci[0])}-{fmt.pct(fc_ci[1])} around the FC's first-seed "
          f"accuracy and {fmt.pct(cnn_ci[0])}-{fmt.pct(cnn_ci[1])} around the CNN's."),
    ]


def _claim_blocks(r: Report, *indices: int) -> list[Block]:
    blocks: list[Block] = []
    for c in r.claims[min(indices):max(indices)]:
        blocks.append(p(f"The seed: \"{c.claim}\". Measured: {c.verdict}. {c.evidence}"))
    return blocks


def _grid_blocks(r: Report, fig: FigureLookup) -> list[Block]:
    g = r.grid
    assert g is not None  # only called when the grid was drawn
    c = g.cnn
    text = (f"The CNN (seed {g.seed}) on 20 test images drawn at random with a fixed seed "
            f"({g.draw_seed}): {c.correct} of {c.n} right "
            f"({fmt.pct(c.accuracy, 0)}; the seed's grid: "
            f"{fmt.pct(g.seed_grid_accuracy, 0)}), mean confidence "
            f"{fmt.pct(c.mean_confidence, 1)}, {c.shown_as_100} shown as 100%.")
    if g.fc is not None:
        text += f" The FC model gets {g.fc.correct} of {g.fc.n} of the same images right."
    mistakes = table(["test image", "true", "predicted", "confidence"],
                     [[f"#{m.index}", str(m.true), str(m.pred), fmt.pct(m.confidence, 1)]
                      for m in g.mistakes[:10]])
    return [p(text), *fig("fig5_prediction_grid"),
            p("A sample of 20 says little about where a model errs; its most confident "
              "mistakes say more:"),
            *fig("fig5b_confident_mistakes"), mistakes]


def _loop_blocks(loop: LoopStudy) -> list[Block]:
    passes = loop.steps * loop.batch_size / loop.train_images
    text = (f"The CNN trained by an explicit loop (forward pass, loss, gradients, parameter "
            f"update written out by hand): batch {loop.batch_size}, {loop.optimizer} at "
            f"learning rate {loop.lr:g}, {loop.steps:,} iterations = {passes:.2f} "
            f"pass(es) over {fmt.count(loop.train_images)} training images"
            + (", the reference lab's full recipe" if loop.full_pass else
               " (the reference lab's recipe is one pass over 60,000 images = 5,000 iterations;"
               " this run did less)")
            + f", in {fmt.seconds(loop.seconds)} on {loop.threads} thread(s); its run "
            f"folder is `{loop.run_dir_rel}`. Smoothed "
            f"loss (exponential moving average, factor {loop.smoothing}) "
            f"{fmt.loss(loop.smoothed_start)} -> {fmt.loss(loop.smoothed_end)}.")
    if loop.test_accuracy is not None:
        text += f" Test accuracy after the loop: {fmt.pct(loop.test_accuracy)}."
    return [p(text)]


def _errors_blocks(r: Report, fig: FigureLookup) -> list[Block]:
    models = r.models
    names = list(models)
    pairs = []
    for k in range(5):
        row = [str(k + 1)]
        for m in names:
            mc = models[m].most_confused
            row.append(f"{mc[k].true} -> {mc[k].pred} ({mc[k].count})" if k < len(mc) else "")
        pairs.append(row)
    per_class = [[str(d)] + [fmt.pct(models[m].per_class_accuracy[d]) for m in names]
                 for d in range(10)]
    conf_claim = [c for c in r.claims if "confident" in c.claim]
    return (fig("confusion_matrices")
            + [p("Most-confused digit pairs (true -> predicted, count summed over seeds):"),
               table(["rank"] + [m.upper() for m in names], pairs)]
            + fig("per_class_accuracy")
            + [table(["digit"] + [m.upper() for m in names], per_class)]
            + fig("reliability")
            + [p(f"The seed: \"{c.claim}\". Measured: {c.verdict}. {c.evidence}")
               for c in conf_claim])


def _provenance_blocks(prov: Provenance) -> list[Block]:
    stage_rows = [[name, fmt.seconds(s)] for name, s in prov.stage_seconds.items()]
    stage_rows.append(["total", fmt.seconds(prov.total_seconds)])
    v = prov.versions
    reused = (" This report was re-drawn with `--reuse` from runs trained earlier: training "
              "times are those of the original runs; the stage times below are not."
              if prov.reused else "")
    return [
        p(f"Command: `{prov.command}`.{reused} Every model trained keeps its run folder "
          "(config, "
          "weights, history, metrics) under `runs/` beside this report, so "
          "`mnistlab evaluate`, `mnistlab predict` and `mnistlab serve` can use them; "
          "report.json holds every number shown here."),
        table(["stage", "time"], stage_rows),
        p(f"mnistlab {v.mnistlab}, PyTorch {v.torch}, NumPy {v.numpy}, Python "
          f"{v.python}; trained on {prov.device}; {_threads(prov)} on "
          f"{prov.cpu_count} core(s); load "
          f"average at the end {', '.join(f'{x:.2f}' for x in prov.load_average)} (other "
          "processes on the machine slow the timings, not the accuracies). MNIST: Yann LeCun "
          "and Corinna Cortes, CC BY-SA 3.0."),
    ]


def _threads(prov: Provenance) -> str:
    """The thread counts of the footer: the report's own, and the models' where they trained on
    others (Ray trials, or runs reused from another report)."""
    if not prov.train_threads:
        return f"{prov.threads} thread(s)"
    each = " or ".join(str(t) for t in prov.train_threads)
    return f"the models on {each} thread(s) each, the rest on {prov.threads}"
