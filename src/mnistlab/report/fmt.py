"""How the report prints numbers: one function per kind, used by the text and by the tests.

Accuracies come in as fractions and print as percent with two decimals (the seed's 96.89%);
Keras-style values (0.9689) with four; losses with four; differences in percentage points.
"""

from __future__ import annotations

from collections.abc import Callable

from mnistlab.report.analysis import Summary


def pct(x: float | None, digits: int = 2) -> str:
    """0.96891 -> '96.89%'."""
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def frac(x: float | None) -> str:
    """Keras's way: 0.96891 -> '0.9689'."""
    return "n/a" if x is None else f"{x:.4f}"


def loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def pts(x: float | None, digits: int = 2, signed: bool = False) -> str:
    """A difference of fractions in percentage points: 0.0166 -> '1.66' ('+1.66' if signed)."""
    if x is None:
        return "n/a"
    return f"{100 * x:+.{digits}f}" if signed else f"{100 * x:.{digits}f}"


def count(n: int | None) -> str:
    """438026 -> '438,026'."""
    return "n/a" if n is None else f"{n:,}"


def seconds(s: float | None) -> str:
    if s is None:
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:04.1f} s"


def mean_sd(summary: Summary, scale: str = "pct") -> str:
    """'96.83% ± 0.13' (mean ± sample std, same unit) or just the mean for one seed."""
    f = _scaler(scale)
    if summary.std is None:
        return f(summary.mean)
    return f"{f(summary.mean)} ± {_bare(scale, summary.std)}"


def interval(summary: Summary, scale: str = "pct") -> str:
    """'[96.50%, 97.15%]', or 'n/a (one seed)' when the spread is unknown."""
    if summary.ci_low is None:
        return "n/a (one seed)"
    f = _scaler(scale)
    return f"[{f(summary.ci_low)}, {f(summary.ci_high)}]"


def _scaler(scale: str) -> Callable[[float | None], str]:
    return {"pct": pct, "pts": pts, "frac": frac, "loss": loss}[scale]


def _bare(scale: str, x: float) -> str:
    # The spread without the unit sign: '0.13' (points) for percentages.
    return pts(x) if scale in ("pct", "pts") else f"{x:.4f}"
