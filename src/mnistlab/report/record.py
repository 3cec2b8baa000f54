"""Dataclasses that write themselves as plain JSON values (report.json).

``Record.to_dict()`` walks the fields in declaration order, so report.json keeps the key order
the fields are written in. Field metadata steer it: ``{"json": False}`` leaves a field out
(a path the report only needs while drawing), ``{"omit_none": True}`` leaves it out when None
(a key that only some reports have).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TypeAlias

import numpy as np

Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"


class Record:
    """Mixin for dataclasses: ``to_dict()`` as report.json writes them."""

    def to_dict(self) -> dict[str, Json]:
        out: dict[str, Json] = {}
        for f in fields(self):  # type: ignore[arg-type]  # every Record is a dataclass
            if not f.metadata.get("json", True):
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none", False):
                continue
            out[f.name] = plain(value)
        return out


def plain(value: object) -> Json:
    """Records, mappings, sequences, arrays and paths as JSON-ready values (NaN stays NaN:
    ``render.jsonable`` turns it into null when the file is written)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value  # type: ignore[return-value]  # str, int, float, bool, None, numpy scalars
