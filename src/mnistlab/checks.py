"""The checks every setting goes through: one function and one message per rule.

A config dataclass declares each field's rule in its metadata, and ``check_fields`` applies
them; the CLI builds its flags (help text, choices, bounds) from the same metadata
(``mnistlab.cli.flags``), so a bound is written once and said the same way everywhere:

    epochs: int = field(default=5, metadata={"help": "passes over the training images",
                                             "min": 1, "max": 1000})

Metadata keys (all optional):

    help      what the setting does, one phrase
    choices   the allowed values (strings)
    min       lowest allowed value (inclusive); for a float, ``"min": 0.0`` with ``below``
    above     a float must be greater than this (only 0: a finite positive number)
    below     exclusive upper bound (seeds: 2**32; fractions: 1)
    max       inclusive upper bound
    max_of    an upper bound known only once the data is loaded ("the training images"); the
              code that loads it checks it (``at_most``), the help text says it
    unset     the default that means "not set" (0 for --limit: all images); it passes the
              rule, while a value the user gives must obey it
    unset_means  what ``unset`` stands for, for the help text ("all", "one pass")
    cores     a thread count: the CLI also caps it at this machine's cores
    metavar   the flag's placeholder in --help
    flag      the flag's name when it is not --field-name
"""

from __future__ import annotations

import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any

from mnistlab.errors import UserError

# Seeds feed numpy.random.default_rng and torch.manual_seed; 32 bits is what every consumer
# (including NumPy's legacy RandomState and Python's random) accepts.
SEED_BELOW = 2**32
# --device's choices (mnistlab.train.device resolves them); here, away from torch, so the CLI
# can offer them without importing it
DEVICES = ("auto", "cpu", "cuda", "mps")
# evaluate --ensemble --select's choices (mnistlab.train.ensemble), torch-free for the same reason
ENSEMBLE_SELECTIONS = ("auto", "validation", "none")


def _num(value: Any) -> str:
    """A number as a person reads it: 60,000 and 0.001, not 60000 and 1e-03."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return repr(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:g}"


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole(name: str, value: Any) -> int:
    if not _is_whole(value):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return value


def at_least(name: str, value: Any, low: int) -> int:
    """A whole number >= ``low``."""
    if not _is_whole(value) or value < low:
        raise UserError(f"{name} must be a whole number >= {_num(low)}, got {_num(value)}")
    return value


def positive_int(name: str, value: Any) -> int:
    return at_least(name, value, 1)


def non_negative_int(name: str, value: Any) -> int:
    return at_least(name, value, 0)


def finite_positive(name: str, value: Any) -> float:
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{name} must be a finite number > 0, got {_num(value)}")
    return value


def in_range(name: str, value: Any, low: float, below: float, *, whole_only: bool = False,
             ) -> float:
    """``low <= value < below`` (and a whole number when ``whole_only``)."""
    ok = (_is_whole(value) if whole_only else _is_real(value) and math.isfinite(value))
    if not ok or not low <= value < below:
        kind = "a whole number" if whole_only else "a number"
        raise UserError(f"{name} must be {kind} in [{_num(low)}, {_num(below)}), "
                        f"got {_num(value)}")
    return value


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    allowed = list(choices)
    if value not in allowed:
        raise UserError(f"{name} must be one of: {', '.join(map(str, allowed))}; "
                        f"got {value!r}")
    return value


def at_most(name: str, value: Any, bound: float, what: str = "") -> Any:
    """``value <= bound``; ``what`` says where the bound comes from ("the training images")."""
    if value > bound:
        why = f" ({what})" if what else ""
        raise UserError(f"{name} must be at most {_num(bound)}{why}, got {_num(value)}")
    return value


def training_sizes(label: Callable[[str], str], *, limit: int, batch_size: int,
                   train_images: int, dataset: str) -> None:
    """``--limit`` at most the split's ``train_images``, ``--batch-size`` at most the images
    kept: the bounds that need the data's size (the loop's and scratch's, alike)."""
    if limit:
        at_most(label("limit"), limit, train_images, f"the {dataset} training images")
        train_images = min(train_images, limit)
    at_most(label("batch_size"), batch_size, train_images,
            "the training images" + (" kept by --limit" if limit else ""))


def seed(name: str, value: Any) -> int:
    return int(in_range(name, value, 0, SEED_BELOW, whole_only=True))


def cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_value(name: str, value: Any, kind: Any, meta: Mapping[str, Any], *,
                allow_unset: bool = True) -> None:
    """Apply one field's rule (its metadata) to ``value``; ``kind`` is int, float, str, ..."""
    if allow_unset and "unset" in meta and value == meta["unset"] \
            and type(value) is type(meta["unset"]):
        return
    if "choices" in meta:
        one_of(name, value, meta["choices"])
        return
    if kind is int:
        if "below" in meta:
            in_range(name, value, meta.get("min", 0), meta["below"], whole_only=True)
        elif "min" in meta:
            at_least(name, value, meta["min"])
        else:
            whole(name, value)
    elif kind is float:
        if meta.get("above") == 0:
            finite_positive(name, value)
        elif "below" in meta:
            in_range(name, value, meta.get("min", 0.0), meta["below"])
        elif not (_is_real(value) and math.isfinite(value)):
            raise UserError(f"{name} must be a finite number, got {_num(value)}")
    if "max" in meta:
        at_most(name, value, meta["max"])


def describe(meta: Mapping[str, Any], kind: Any) -> str:
    """The rule in words, for --help: "1 to 1,000", "> 0", "in [0, 1)", "" when free."""
    if "choices" in meta:
        return ""                               # argparse lists them as {a,b,c}
    low, high = meta.get("min"), meta.get("max")
    if "max_of" in meta:
        return f"{_num(low or 0)} to {meta['max_of']}"
    if "below" in meta:
        if kind is int and meta["below"] == SEED_BELOW:
            return f"{_num(low or 0)} to 2**32 - 1"
        return f"in [{_num(low or 0)}, {_num(meta['below'])})"
    if meta.get("above") == 0:
        return f"> 0, at most {_num(high)}" if high is not None else "> 0"
    if low is not None and high is not None:
        return f"{_num(low)} to {_num(high)}"
    if low is not None:
        return f">= {_num(low)}"
    if high is not None:
        return f"at most {_num(high)}"
    return ""


def field_kinds(cls: type) -> dict[str, Any]:
    """Each field's type, with ``X | None`` read as X (the annotations are strings here)."""
    hints = typing.get_type_hints(cls)
    kinds = {}
    for f in fields(cls):
        kind = hints[f.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1:
            kind = args[0]
        kinds[f.name] = kind
    return kinds


def check_fields(obj: Any, label: Callable[[str], str] = str) -> None:
    """Check every field of the dataclass ``obj`` that declares a rule in its metadata.

    ``label(field_name)`` names the setting in the message (the CLI passes its flag names).
    """
    kinds = field_kinds(type(obj))
    for f in fields(obj):
        if f.metadata:
            check_value(label(f.name), getattr(obj, f.name), kinds[f.name], f.metadata)
