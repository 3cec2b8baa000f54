"""Words from numbers: the seed-vs-this-run table, the verdict on each of the seed's claims,
and the conclusions. Every sentence is built from the report's numbers (``schema``: what
report.json holds), so the text cannot contradict the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnistlab.report import fmt
from mnistlab.report.analysis import Summary
from mnistlab.report.schema import (
    Claim,
    Comparison,
    Grid,
    LoopStudy,
    Meta,
    ModelStudy,
    RunRow,
    SeedRow,
)
from mnistlab.report.seed import CLAIMS, FC_LOG, SEED

# A gap (train minus test accuracy) below this many points is "small" for these models.
SMALL_GAP = 0.01
# "Well calibrated" when the expected calibration error is below 1 point.
GOOD_ECE = 0.01
# The custom loop's smoothed loss must fall by this share of its start to be a decrease.
LOSS_FALL = 0.05


def seed_vs_run(meta: Meta, runs: list[RunRow], models: dict[str, ModelStudy],
                comp: Comparison | None, grid: Grid | None, loop: LoopStudy) -> list[SeedRow]:
    """One row per number the seed states; this run's value is the mean over seeds (± std)."""
    rows = [SeedRow("MNIST images (train + test)", fmt.count(SEED["dataset_images"]),
                     fmt.count(meta.train_images + meta.test_images),
                     "" if meta.train_images == 60_000 else "a subset (--limit / --quick)",
                     SEED["dataset_images"], meta.train_images + meta.test_images)]
    fc, cnn = models.get("fc"), models.get("cnn")
    if fc:
        epochs = fc.curves.epochs
        steps = runs[0].steps_per_epoch
        rows.append(SeedRow("FC parameters (figure 1)", fmt.count(SEED["fc_parameters"]),
                             fmt.count(fc.parameters), "", SEED["fc_parameters"],
                             fc.parameters))
        rows.append(SeedRow("batch size / epochs", f"{SEED['batch_size']} / {SEED['epochs']}",
                            f"{SEED['batch_size']} / {epochs}",
                            "" if epochs == SEED["epochs"] else
                            "fewer epochs (--epochs / --quick)"))
        if steps:
            rows.append(SeedRow("steps per epoch", str(SEED["steps_per_epoch"]), str(steps)))
        rows.append(SeedRow("FC learning rate (SGD)", f"{SEED['fc_lr_text']} (text)", "0.1",
                             "the seed's own logs match 0.1, not the 0.01 its text says"))
        curve_acc = fc.curves.train_accuracy
        curve_loss = fc.curves.train_loss
        for epoch, acc, loss in FC_LOG:
            if epoch <= len(curve_acc[0]):
                mean_acc = sum(c[epoch - 1] for c in curve_acc) / len(curve_acc)
                mean_loss = sum(c[epoch - 1] for c in curve_loss) / len(curve_loss)
                rows.append(SeedRow(f"FC epoch {epoch} train accuracy / loss (figure 2)",
                                     f"{fmt.frac(acc)} / {fmt.loss(loss)}",
                                     f"{fmt.frac(mean_acc)} / {fmt.loss(mean_loss)}",
                                     "running mean over the epoch, as Keras prints"))
        rows.append(SeedRow("FC test accuracy (figure 2)", fmt.pct(SEED["fc_test_accuracy"]),
                             fmt.mean_sd(fc.test_accuracy), "", SEED["fc_test_accuracy"],
                             fc.test_accuracy.mean))
        rows.append(SeedRow("FC test loss (figure 2)", fmt.loss(SEED["fc_test_loss"]),
                             fmt.mean_sd(fc.test_loss, "loss"), "", SEED["fc_test_loss"],
                             fc.test_loss.mean))
    if cnn:
        rows.append(SeedRow("CNN parameters (figure 3)", fmt.count(SEED["cnn_parameters"]),
                             fmt.count(cnn.parameters), "", SEED["cnn_parameters"],
                             cnn.parameters))
        rows.append(SeedRow("CNN test accuracy (figure 4)", fmt.pct(SEED["cnn_test_accuracy"]),
                             fmt.mean_sd(cnn.test_accuracy), "", SEED["cnn_test_accuracy"],
                             cnn.test_accuracy.mean))
    if comp and fc and cnn:
        imp = comp.improvement
        rows.append(SeedRow("CNN improvement over FC, points (section 3.3)",
                             fmt.pts(SEED["improvement_points"] / 100),
                             fmt.mean_sd(imp, "pts") + f", 95% CI {fmt.interval(imp, 'pts')}",
                             "paired by seed", SEED["improvement_points"],
                             100 * imp.mean))
        fc_gap, cnn_gap = fc.gap_keras.mean, cnn.gap_keras.mean
        rows.append(SeedRow("FC train - test accuracy gap, points (section 2.3)",
                             fmt.pts(SEED["fc_train_accuracy"] - SEED["fc_test_accuracy"]),
                             fmt.pts(fc_gap), "Keras-style running train accuracy"))
        rows.append(SeedRow("CNN gap smaller than FC gap (section 3.3)", "yes",
                             "yes" if cnn.gap_measured.mean < fc.gap_measured.mean else "no",
                             f"train accuracy re-measured after training: FC "
                             f"{fmt.pts(fc.gap_measured.mean)}, CNN "
                             f"{fmt.pts(cnn.gap_measured.mean)} points; Keras-style: FC "
                             f"{fmt.pts(fc_gap)}, CNN {fmt.pts(cnn_gap)}"))
    if grid:
        g = grid.cnn
        rows.append(SeedRow("CNN accuracy on the 5x4 sample grid (figure 5)",
                             fmt.pct(SEED["grid_accuracy"], 0),
                             f"{fmt.pct(g.accuracy, 0)} ({g.correct}/{g.n})",
                             f"{g.shown_as_100} of {g.n} shown as 100% confident",
                             SEED["grid_accuracy"], g.accuracy))
    if loop.steps:
        rows.append(SeedRow("custom loop: loss decreases (figure 6)", "yes (no numbers)",
                             f"{fmt.loss(loop.smoothed_start)} -> {fmt.loss(loop.smoothed_end)}",
                             f"smoothed loss over {loop.steps:,} iterations"))
    return rows


def claims(models: dict[str, ModelStudy], comp: Comparison | None, grid: Grid | None,
           loop: LoopStudy) -> list[Claim]:
    """Each qualitative claim of the seed, a verdict (supported / not supported / mixed /
    inconclusive) and the measured evidence."""
    out = []
    fc, cnn = models.get("fc"), models.get("cnn")
    if fc:
        out.append(_overfitting_claim(fc, cnn))
    if fc and cnn and comp:
        smaller = cnn.gap_measured.mean < fc.gap_measured.mean
        gd = comp.gap_difference
        lower = cnn.test_accuracy.mean > fc.test_accuracy.mean
        out.append(Claim(
            claim=CLAIMS["cnn_smaller_gap"],
            verdict=_by_interval(gd),
            evidence=(f"Train accuracy re-measured on the training images after training, "
                      f"minus test accuracy: FC {fmt.pts(fc.gap_measured.mean)} points, "
                      f"CNN {fmt.pts(cnn.gap_measured.mean)} points (FC gap minus CNN "
                      f"gap {fmt.mean_sd(gd, 'pts')} points, 95% CI "
                      f"{fmt.interval(gd, 'pts')}). The CNN's test error is "
                      f"{'lower' if lower else 'not lower'} than the FC's; its gap is "
                      f"{'smaller' if smaller else 'not smaller'}"
                      + ("" if gd.ci_low is not None else ", from one seed, which cannot tell "
                         "a difference from the spread between seeds") + "."),
        ))
    if cnn:
        out.append(_confidence_claim(cnn, grid))
    if loop.steps:
        down = loop.smoothed_end < loop.smoothed_start
        share = loop.decreasing_share
        # a fall of a few tenths of a percent (50 iterations) is the noise, not a trend
        verdict = ("supported" if loop.smoothed_end < (1 - LOSS_FALL) * loop.smoothed_start
                   else "inconclusive" if down else "not supported")
        out.append(Claim(
            claim=CLAIMS["loss_decreases"],
            verdict=verdict,
            evidence=(f"Smoothed loss {fmt.loss(loop.smoothed_start)} at the start, "
                      f"{fmt.loss(loop.smoothed_end)} after {loop.steps:,} iterations"
                      + (f"; measured every 100 iterations it fell {fmt.pct(share, 0)} of "
                         "the time" if share is not None else "")
                      + ("" if share is None or share == 1 else
                         " (mini-batch noise lifts it now and then)")
                      + (f"; a fall under {fmt.pct(LOSS_FALL, 0)} is no trend"
                         if verdict == "inconclusive" else "") + "."),
        ))
    return out


def _by_interval(difference: Summary) -> str:
    """A difference over seeds: supported when its 95% interval lies above zero, not supported
    below, inconclusive across zero or from one seed (no interval)."""
    if difference.ci_low is None or difference.ci_high is None:
        return "inconclusive"
    return ("supported" if difference.ci_low > 0 else
            "not supported" if difference.ci_high < 0 else "inconclusive")


def _overfitting_claim(fc: ModelStudy, cnn: ModelStudy | None = None) -> Claim:
    gap = fc.gap_measured.mean
    keras_gap = fc.gap_keras.mean
    trend = loss_trend(fc)
    test_acc = _mean_curve(fc.curves.test_accuracy)
    verdict = "supported" if trend.rising and gap >= SMALL_GAP else "not supported"
    evidence = (f"The FC model's train accuracy, re-measured on its training images after "
                f"training, is {fmt.pts(gap)} points above its test accuracy (the Keras-style "
                f"running figure the seed quotes gives {fmt.pts(keras_gap)}). Its test loss is "
                f"{trend.words} ({' -> '.join(fmt.loss(x) for x in trend.test_loss)}) "
                + (f"and test accuracy moved {' -> '.join(fmt.pct(x) for x in test_acc)}. "
                   if len(test_acc) > 1 else f"and its test accuracy is {fmt.pct(test_acc[0])}. "))
    if verdict == "supported":
        evidence += ("Test loss rising while training loss falls is the mark of overfitting, "
                     "and here it shows.")
    else:
        state = ("a single value, with no trend to read yet" if len(trend.test_loss) < 2
                 else "still falling, so it is if anything still under-fitted" if trend.falling
                 else "no longer falling, so it is at most at the edge of overfitting")
        evidence += ("A small train-test gap is not a sign of overfitting: some gap is normal "
                     "for any model fitted to its training data. Overfitting shows as a gap "
                     "that grows while test loss rises; after "
                     f"{len(trend.test_loss)} epoch(s) the FC's test loss is {state}.")
    if cnn is not None:
        c = loss_trend(cnn)
        rise = c.test_loss[-1] - min(c.test_loss)
        evidence += (f" The CNN's mean test loss is {c.words} "
                     f"({' -> '.join(fmt.loss(x) for x in c.test_loss)})"
                     + (f", up {rise:.4f} from its best while its training loss keeps falling: "
                        "if anything, the first hint of overfitting in this study is the "
                        "CNN's, not the FC's." if c.rising else "."))
    return Claim(claim=CLAIMS["fc_gap_overfitting"], verdict=verdict, evidence=evidence)


@dataclass(frozen=True)
class LossTrend:
    """How a model's mean test loss over seeds moves across epochs."""

    test_loss: list[float]      # mean over seeds, per epoch
    best_epoch: int             # 1-based
    falling: bool               # lowest at the last epoch (or a single epoch)
    rising: bool                # above its best while the training loss still fell
    words: str


def loss_trend(model: ModelStudy) -> LossTrend:
    """How the mean test loss over seeds moves across epochs, in numbers and in words.

    ``rising``: the last epoch's test loss is above the best epoch's while the training loss
    still fell in the last epoch (the textbook picture of overfitting).
    """
    test_loss = _mean_curve(model.curves.test_loss)
    train_loss = _mean_curve(model.curves.train_loss)
    best = min(range(len(test_loss)), key=test_loss.__getitem__)
    falling = len(test_loss) < 2 or best == len(test_loss) - 1
    rising = not falling and train_loss[-1] < train_loss[-2]
    words = ("measured after one epoch only" if len(test_loss) < 2 else
             "still falling at the last epoch" if falling else
             f"lowest after epoch {best + 1} and higher after it")
    return LossTrend(test_loss=test_loss, best_epoch=best + 1, falling=falling, rising=rising,
                     words=words)


def _confidence_claim(cnn: ModelStudy, grid: Grid | None) -> Claim:
    cal = cnn.calibration
    share, acc99 = cal.share_confident_99, cal.accuracy_confident_99
    ece = cnn.ece.mean
    earned = acc99 is not None and acc99 >= 0.99 and ece < GOOD_ECE
    text = (f"{fmt.pct(share, 1)} of the CNN's test predictions carry at least 99% "
            f"confidence, and {fmt.pct(acc99)} of those are right; over all test images the mean "
            f"confidence is {fmt.pct(cal.mean_confidence)} against an accuracy of "
            f"{fmt.pct(cal.accuracy)}; expected calibration error "
            f"{fmt.mean_sd(cnn.ece, 'pct')} ({cal.n_bins} bins).")
    if grid:
        g = grid.cnn
        text += (f" On the 20-image grid, {g.shown_as_100} of {g.n} predictions print as "
                 "100%.")
    # the claim is twofold: most predictions near-certain, and rightly so
    most = share is not None and share >= 0.5
    under = cal.mean_confidence < cal.accuracy
    if not most:
        text += (f" Most predictions are not near-certain here: the CNN is "
                 f"{'under' if under else 'over'}-confident on average (mean confidence "
                 f"{'below' if under else 'above'} its accuracy; see the reliability diagram).")
        verdict = "not supported"
    elif earned:
        text += " The confidence is earned: near-certain predictions are almost always right."
        verdict = "supported"
    else:
        text += " The confidence is not fully earned: see the reliability diagram."
        verdict = "mixed"
    return Claim(claim=CLAIMS["extremely_confident"], verdict=verdict, evidence=text)


def _mean_curve(curves: list[list[float]]) -> list[float]:
    return [sum(c[i] for c in curves) / len(curves) for i in range(len(curves[0]))]


def conclusions(meta: Meta, models: dict[str, ModelStudy], comp: Comparison | None,
                claims: list[Claim], loop: LoopStudy) -> list[str]:
    fc, cnn = models.get("fc"), models.get("cnn")
    n = len(meta.seeds)
    out = []
    if fc and cnn and comp:
        imp = comp.improvement
        ci = "" if imp.ci_low is None else f" (95% CI {fmt.interval(imp, 'pts')} points)"
        out.append(
            f"Over {n} seed(s), the CNN reached {fmt.mean_sd(cnn.test_accuracy)} test "
            f"accuracy and the FC baseline {fmt.mean_sd(fc.test_accuracy)}; the CNN beat it "
            f"by {fmt.mean_sd(imp, 'pts')} points{ci}, in {comp.cnn_wins} of "
            f"{comp.n_pairs} paired seed(s), and made {fmt.pct(comp.error_reduction, 0)} "
            f"fewer test errors (seed report: {SEED['cnn_test_accuracy'] * 100:.2f}% vs "
            f"{SEED['fc_test_accuracy'] * 100:.2f}%, +{SEED['improvement_points']:.2f}).")
        mc = comp.mcnemar_first_seed
        out.append(
            f"On seed {meta.seeds[0]} the two models disagree on "
            f"{mc.disagreements} test images: only the CNN is right "
            f"on {mc.only_b_correct}, only the FC on {mc.only_a_correct} (exact McNemar "
            f"p = {mc.p_value:.2g}).")
    for claim in claims:
        out.append(f"Seed's claim \"{claim.claim}\": {claim.verdict}.")
    if cnn:
        pairs = ", ".join(f"{p.true}->{p.pred} ({p.count})" for p in cnn.most_confused[:3])
        worst = min(range(10), key=lambda d: cnn.per_class_accuracy[d])
        out.append(f"The CNN's most frequent confusions (true->predicted, summed over seeds) "
                   f"are {pairs}; its weakest digit is {worst} "
                   f"({fmt.pct(cnn.per_class_accuracy[worst])}).")
    if loop.steps:
        out.append(f"The explicit training loop ran {loop.steps:,} iterations"
                   + (" (one full pass, as the reference lab)" if loop.full_pass else
                      " (fewer than the reference lab's 5,000-iteration full pass)")
                   + f"; its smoothed loss went from {fmt.loss(loop.smoothed_start)} to "
                   f"{fmt.loss(loop.smoothed_end)} and the CNN it trained scored "
                   f"{fmt.pct(loop.test_accuracy)} on the test set.")
    return out
