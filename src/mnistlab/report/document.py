"""The report's content as data: sections of blocks (paragraph, list, table, code, figure).

Built once from report.json; ``render`` turns the same blocks into REPORT.md and report.html,
so the two always say the same thing.
"""

from __future__ import annotations

from typing import Any

from mnistlab.report import fmt
from mnistlab.report.seed import SEED

Block = dict[str, Any]


def p(text: str) -> Block:
    return {"kind": "p", "text": text}


def ul(items: list[str]) -> Block:
    return {"kind": "list", "items": items}


def table(header: list[str], rows: list[list[str]]) -> Block:
    return {"kind": "table", "header": header, "rows": rows}


def code(text: str, caption: str = "") -> Block:
    return {"kind": "code", "text": text, "caption": caption}


def build(r: dict) -> dict[str, Any]:
    """{"title", "sections": [{"title", "blocks"}]} for the templates."""
    meta, models, figs = r["meta"], r["models"], r.get("figures", {})

    def fig(name: str) -> list[Block]:
        f = figs.get(name)
        return [{"kind": "figure", "name": name, **f}] if f else []

    sections = [
        {"title": "Conclusions", "blocks": [ul(r["conclusions"])]},
        {"title": "The seed report against this run",
         "blocks": [p("Every number the seed report states, beside this run's measurement "
                      f"(mean ± standard deviation over {len(meta['seeds'])} seed(s) where "
                      "several runs exist)."),
                    table(["quantity", "seed report", "this run", "note"],
                          [[x["item"], x["seed"], x["this_run"], x["note"]]
                           for x in r["seed_vs_run"]])]},
    ]
    for name, fig_no, title in (("fc", (1, 2), "The fully connected baseline"),
                                ("cnn", (3, 4), "The convolutional network")):
        if name in models:
            sections.append({"title": title, "blocks": _model_blocks(name, models[name], fig_no,
                                                                    r)})
    if r["comparison"]:
        sections.append({"title": "FC against CNN over seeds",
                         "blocks": _comparison_blocks(r) + fig("learning_curves")
                         + fig("seed_comparison") + _claim_blocks(r, 0, 2)})
    if r["grid"]:
        sections.append({"title": "Predictions", "blocks": _grid_blocks(r, fig)})
    if (r.get("loop") or {}).get("steps"):
        sections.append({"title": "The explicit training loop",
                         "blocks": _loop_blocks(r["loop"]) + fig("fig6_custom_loop_loss")})
    sections.append({"title": "Beyond the seed: errors by class and calibration",
                     "blocks": _errors_blocks(r, fig)})
    sections.append({"title": "The seed's claims, tested",
                     "blocks": [table(["claim", "verdict", "evidence"],
                                      [[c["claim"], c["verdict"], c["evidence"]]
                                       for c in r["claims"]])]})
    sections.append({"title": "How this report was made", "blocks": _provenance_blocks(r)})
    return {"title": "MNIST: a fully connected network against a CNN, reproduced",
            "subtitle": _subtitle(meta), "sections": sections}


def _subtitle(meta: dict) -> str:
    return (f"`{meta['command']}`: {len(meta['seeds'])} seed(s), "
            f"{fmt.count(meta['train_images'])} training and {fmt.count(meta['test_images'])} "
            f"test images; started {meta['started']}, took {fmt.seconds(meta['total_seconds'])} "
            f"on {meta['cpu_count']} CPU core(s) (load average {meta['load_average'][0]:.2f} at "
            "the end).")


def _model_blocks(name: str, m: dict, fig_no: tuple[int, int], r: dict) -> list[Block]:
    runs = [x for x in r["runs"] if x["model"] == name]
    first = runs[0]
    log = "\n".join([*m["log_lines"], m["eval_line"], "",
                     f"Test accuracy: {first['test_accuracy']}"])
    return [
        code(m["summary_text"], f"Figure {fig_no[0]}: {name.upper()} architecture summary: "
                                f"{fmt.count(m['parameters'])} parameters, "
                                f"{fmt.count(m['mult_adds_per_image'])} multiply-adds per image."),
        code(log, f"Figure {fig_no[1]}: training log (seed {m['log_seed']}, {m['precision']}) "
                  f"and the test evaluation: test accuracy {fmt.pct(first['test_accuracy'])}, "
                  f"test loss {fmt.loss(first['test_loss'])}. Each epoch's accuracy and loss are "
                  "running means over its batches, as Keras prints them; val_* is the test set "
                  "after the epoch."),
    ]


def _comparison_blocks(r: dict) -> list[Block]:
    models, comp = r["models"], r["comparison"]
    rows = []
    for x in r["runs"]:
        rows.append([x["model"].upper(), str(x["seed"]), fmt.pct(x["test_accuracy"]),
                     fmt.loss(x["test_loss"]), fmt.frac(x["train_accuracy"]),
                     fmt.loss(x["train_loss"]), fmt.pct(x["train_accuracy_measured"]),
                     fmt.pts(x["gap_measured"]), fmt.pct(x["ece"]),
                     fmt.seconds(x["train_seconds"]), f"`{x['run_dir_rel']}`"])
    per_seed = table(["model", "seed", "test acc.", "test loss", "train acc. (Keras)",
                      "train loss", "train acc. (re-measured)", "gap (points)", "ECE",
                      "train time", "run folder"], rows)
    summary_rows = []
    for key, label, scale in (("test_accuracy", "test accuracy", "pct"),
                              ("test_loss", "test loss", "loss"),
                              ("train_accuracy_measured", "train accuracy (re-measured)", "pct"),
                              ("gap_measured", "train - test gap (points)", "pts"),
                              ("gap_keras", "gap, Keras-style train accuracy (points)", "pts"),
                              ("ece", "expected calibration error", "pct")):
        summary_rows.append([label] + [f"{fmt.mean_sd(models[m][key], scale)} "
                                       f"{fmt.interval(models[m][key], scale)}"
                                       for m in ("fc", "cnn")])
    imp = comp["improvement"]
    return [
        p("Each model trained with the seed's recipe (FC: SGD, learning rate 0.1, fp32; CNN: "
          "Adam 1e-3, bf16 through mnistlab's fused step; batch 64) once per seed. The seed "
          "sets the weight initialisation and the batch order; the FC and CNN runs of one seed "
          "share the batch order, so differences are paired by seed."),
        per_seed,
        p("Mean ± standard deviation over seeds, then the 95% confidence interval of the mean "
          "(t distribution, n - 1 degrees of freedom):"),
        table(["", "FC", "CNN"], summary_rows),
        p(f"Improvement of the CNN over the FC baseline, paired by seed: "
          f"{fmt.mean_sd(imp, 'pts')} points, 95% CI {fmt.interval(imp, 'pts')} "
          f"(the seed report: {SEED['improvement_points']:.2f} points from one run each). "
          f"Test-set sampling alone ({fmt.count(r['meta']['test_images'])} images) puts a "
          "95% Wilson interval of "
          f"{fmt.pct(models['fc']['test_interval_first_seed'][0])}-"
          f"{fmt.pct(models['fc']['test_interval_first_seed'][1])} around the FC's first-seed "
          f"accuracy and {fmt.pct(models['cnn']['test_interval_first_seed'][0])}-"
          f"{fmt.pct(models['cnn']['test_interval_first_seed'][1])} around the CNN's."),
    ]


def _claim_blocks(r: dict, *indices: int) -> list[Block]:
    blocks = []
    for c in r["claims"][min(indices):max(indices)]:
        blocks.append(p(f"The seed: \"{c['claim']}\". Measured: {c['verdict']}. "
                        f"{c['evidence']}"))
    return blocks


def _grid_blocks(r: dict, fig: Any) -> list[Block]:
    g = r["grid"]
    c = g["cnn"]
    text = (f"The CNN (seed {g['seed']}) on 20 test images drawn at random with a fixed seed "
            f"({g['draw_seed']}): {c['correct']} of {c['n']} right "
            f"({fmt.pct(c['accuracy'], 0)}; the seed's grid: "
            f"{fmt.pct(g['seed_grid_accuracy'], 0)}), mean confidence "
            f"{fmt.pct(c['mean_confidence'], 1)}, {c['shown_as_100']} shown as 100%.")
    if "fc" in g:
        text += (f" The FC model gets {g['fc']['correct']} of {g['fc']['n']} of the same "
                 "images right.")
    mistakes = table(["test image", "true", "predicted", "confidence"],
                     [[f"#{m['index']}", str(m["true"]), str(m["pred"]),
                       fmt.pct(m["confidence"], 1)] for m in g["mistakes"][:10]])
    return [p(text), *fig("fig5_prediction_grid"),
            p("A sample of 20 says little about a model that errs on about one image in a "
              "hundred; its most confident mistakes say more:"),
            *fig("fig5b_confident_mistakes"), mistakes]


def _loop_blocks(loop: dict) -> list[Block]:
    passes = loop["steps"] * loop["batch_size"] / loop["train_images"]
    full = loop["train_images"] == 60_000 and loop["steps"] == loop["planned_steps"]
    text = (f"The CNN trained by an explicit loop (forward pass, loss, gradients, parameter "
            f"update written out by hand): batch {loop['batch_size']}, {loop['optimizer']} at "
            f"learning rate {loop['lr']:g}, {loop['steps']:,} iterations = {passes:.2f} "
            f"pass(es) over {fmt.count(loop['train_images'])} training images"
            + (", the reference lab's full recipe" if full else
               " (the reference lab's recipe is one pass over 60,000 images = 5,000 iterations;"
               " this run did less)")
            + f", in {fmt.seconds(loop['seconds'])} on {loop['threads']} thread(s); its run "
            f"folder is `{loop['run_dir_rel']}`. Smoothed "
            f"loss (exponential moving average, factor {loop['smoothing']}) "
            f"{fmt.loss(loop['smoothed_start'])} -> {fmt.loss(loop['smoothed_end'])}.")
    if loop.get("test_accuracy") is not None:
        text += f" Test accuracy after the loop: {fmt.pct(loop['test_accuracy'])}."
    return [p(text)]


def _errors_blocks(r: dict, fig: Any) -> list[Block]:
    models = r["models"]
    names = list(models)
    pairs = []
    for k in range(5):
        row = [str(k + 1)]
        for m in names:
            mc = models[m]["most_confused"]
            row.append(f"{mc[k]['true']} -> {mc[k]['pred']} ({mc[k]['count']})"
                       if k < len(mc) else "")
        pairs.append(row)
    per_class = [[str(d)] + [fmt.pct(models[m]["per_class_accuracy"][d]) for m in names]
                 for d in range(10)]
    conf_claim = [c for c in r["claims"] if "confident" in c["claim"]]
    return (fig("confusion_matrices")
            + [p("Most-confused digit pairs (true -> predicted, count summed over seeds):"),
               table(["rank"] + [m.upper() for m in names], pairs)]
            + fig("per_class_accuracy")
            + [table(["digit"] + [m.upper() for m in names], per_class)]
            + fig("reliability")
            + [p(f"The seed: \"{c['claim']}\". Measured: {c['verdict']}. {c['evidence']}")
               for c in conf_claim])


def _provenance_blocks(r: dict) -> list[Block]:
    meta = r["meta"]
    stage_rows = [[name, fmt.seconds(s)] for name, s in meta["stage_seconds"].items()]
    stage_rows.append(["total", fmt.seconds(meta["total_seconds"])])
    v = meta["versions"]
    reused = (" This report was re-drawn with `--reuse` from runs trained earlier: training "
              "times are those of the original runs; the stage times below are not."
              if meta["config"].get("reuse") else "")
    return [
        p(f"Command: `{meta['command']}`.{reused} Every model trained keeps its run folder "
          "(config, "
          "weights, history, metrics) under `runs/` beside this report, so "
          "`mnistlab evaluate`, `mnistlab predict` and `mnistlab serve` can use them; "
          "report.json holds every number shown here."),
        table(["stage", "time"], stage_rows),
        p(f"mnistlab {v['mnistlab']}, PyTorch {v['torch']}, NumPy {v['numpy']}, Python "
          f"{v['python']}; {meta['threads']} thread(s) on {meta['cpu_count']} core(s); load "
          f"average at the end {', '.join(f'{x:.2f}' for x in meta['load_average'])} (other "
          "processes on the machine slow the timings, not the accuracies). MNIST: Yann LeCun "
          "and Corinna Cortes, CC BY-SA 3.0."),
    ]
