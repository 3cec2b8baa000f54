"""A sweep's result: per group of settings (model + swept settings), test accuracy mean +- std,
95% t-interval and n over seeds, best group first; summary.md, summary.csv and a figure.

Mean, std and interval come from ``mnistlab.report.analysis.summarize`` (the report's own), the
figure's look from ``mnistlab.report.plots``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mnistlab import atomic
from mnistlab.report.analysis import summarize
from mnistlab.report.plots import model_color, save_figure
from mnistlab.sweep.record import SweepRecord

MD, CSV, FIGURE = "summary.md", "summary.csv", "summary.png"


@dataclass(frozen=True)
class Group:
    """The finished trials of one model + settings, over seeds."""

    model: str
    settings: dict[str, Any]
    n: int
    mean_test_accuracy: float
    std: float | None                  # sample standard deviation; None with one seed
    ci95: tuple[float, float] | None   # t-interval of the mean; None with one seed
    seeds: list[int]
    accuracies: list[float]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "settings": {"model": self.model, **self.settings},
                "n": self.n, "mean_test_accuracy": self.mean_test_accuracy, "std": self.std,
                "ci95": list(self.ci95) if self.ci95 else None, "seeds": self.seeds,
                "test_accuracies": self.accuracies}

    def label(self) -> str:
        return " ".join([self.model, *(f"{k}={v}" for k, v in self.settings.items())])


def groups(record: SweepRecord) -> list[Group]:
    """Finished trials grouped by model + settings, the best mean test accuracy first."""
    buckets: dict[str, list[Any]] = {}
    for r in record.trials:
        if r.state == "done" and r.metrics is not None:
            key = repr((r.model, sorted(r.settings.items())))
            buckets.setdefault(key, []).append(r)
    out = []
    for members in buckets.values():
        members.sort(key=lambda r: r.seed)
        acc = [r.metrics.test_accuracy for r in members]
        s = summarize(acc)
        out.append(Group(model=members[0].model, settings=dict(members[0].settings), n=s.n,
                         mean_test_accuracy=s.mean, std=s.std,
                         ci95=(s.ci_low, s.ci_high) if s.ci_low is not None else None,
                         seeds=[r.seed for r in members], accuracies=acc))
    return sorted(out, key=lambda g: -g.mean_test_accuracy)


def write_all(record: SweepRecord, root: Path) -> list[Group]:
    """summary.md, summary.csv and summary.png into the sweep folder; returns the groups."""
    found = groups(record)
    atomic.write_text(root / CSV, to_csv(found))
    figure = swept_figure(found, list(record.spec.grid))
    if figure is not None:
        save_figure(figure, root / FIGURE)
    atomic.write_text(root / MD, to_markdown(record, found, figure is not None))
    return found


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def to_csv(found: list[Group]) -> str:
    keys = sorted({k for g in found for k in g.settings})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "model", *keys, "n", "mean_test_accuracy", "std", "ci95_low",
                "ci95_high", "seeds"])
    for i, g in enumerate(found, 1):
        w.writerow([i, g.model, *(g.settings.get(k, "") for k in keys), g.n,
                    f"{g.mean_test_accuracy:.6f}", "" if g.std is None else f"{g.std:.6f}",
                    "" if g.ci95 is None else f"{g.ci95[0]:.6f}",
                    "" if g.ci95 is None else f"{g.ci95[1]:.6f}",
                    " ".join(map(str, g.seeds))])
    return buf.getvalue()


def to_markdown(record: SweepRecord, found: list[Group], has_figure: bool) -> str:
    counts = record.counts()
    lines = ["# Sweep summary", "",
             f"{len(record.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()
                                                           if n) +
             f"; {record.total_seconds:.0f} s of wall clock ({record.executor} executor).", "",
             "Test accuracy (%) per group of settings over seeds: mean +- sample standard "
             "deviation, the 95% t-interval of the mean, and n; best group first.", "",
             "| rank | group | n | mean | std | 95% CI |", "|---:|---|---:|---:|---:|---|"]
    for i, g in enumerate(found, 1):
        ci = f"{_pct(g.ci95[0])} .. {_pct(g.ci95[1])}" if g.ci95 else "(one seed)"
        lines.append(f"| {i} | {g.label()} | {g.n} | {_pct(g.mean_test_accuracy)} | "
                     f"{_pct(g.std) or '-'} | {ci} |")
    if has_figure:
        lines += ["", f"![test accuracy against each swept setting]({FIGURE})"]
    bad = [r for r in record.trials if r.state in ("failed", "lost")]
    if bad:
        lines += ["", "Trials that did not finish:", ""]
        lines += [f"- {r.id}: {r.state}" + (f" ({r.error})" if r.error else "") for r in bad]
    return "\n".join(lines) + "\n"


def swept_figure(found: list[Group], keys: list[str]) -> Figure | None:
    """Test accuracy against each swept setting, one panel per setting, one line per model
    (the other settings averaged over), error bars the 95% interval over seeds.

    With no swept setting, one panel of the models side by side."""
    if not found:
        return None
    panels = keys or ["model"]
    fig = Figure(figsize=(5.2 * len(panels), 4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, key in zip(axes, panels, strict=True):
        for model in sorted({g.model for g in found}):
            mine = [g for g in found if g.model == model]
            values = sorted({_key(g, key) for g in mine}, key=_order)
            x = np.arange(len(values))
            means, lows, highs = [], [], []
            for v in values:
                acc = [a for g in mine if _key(g, key) == v for a in g.accuracies]
                s = summarize(acc)
                means.append(100 * s.mean)
                lows.append(100 * (s.mean - s.ci_low) if s.ci_low is not None else 0.0)
                highs.append(100 * (s.ci_high - s.mean) if s.ci_high is not None else 0.0)
            ax.errorbar(x, means, yerr=[lows, highs], fmt="o-", color=model_color(model),
                        capsize=5, lw=1.5, label=model.upper())
            ax.set_xticks(x, [str(v) for v in values])
        n = max(g.n for g in found)
        ax.set(title=f"Test accuracy by {key} (whisker = 95% CI, n <= {n} seeds)",
               xlabel=key, ylabel="test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _key(g: Group, key: str) -> Any:
    return g.model if key == "model" else g.settings.get(key)


def _order(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int | float) and not math.isnan(v) else (1, str(v))
