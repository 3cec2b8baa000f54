"""Terminal output shared by every command: progress bars, plain lines, the closing JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_tty() -> bool:
    return sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
             unit: str = "it", leave: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar on standard error; silent when standard error is not a terminal."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave,
                disable=not is_tty(), file=sys.stderr, dynamic_ncols=True, **kwargs)


def say(line: str) -> None:
    """A human-readable line on standard output (works alongside an active progress bar)."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()  # a pipe or log file sees each line as it happens, not at exit


_emitted = [0]        # JSON lines printed by this process (the command line asks)


def emit_json(obj: Any) -> None:
    """Print one JSON object as the last line of standard output (the `--json` contract)."""
    from mnistlab.atomic import strict_json

    print(json.dumps(strict_json(obj), sort_keys=False, default=_jsonable, allow_nan=False),
          flush=True)
    _emitted[0] += 1


def json_lines() -> int:
    """How many JSON lines emit_json has printed so far."""
    return _emitted[0]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
