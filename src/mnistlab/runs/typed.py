"""JSON values, and dataclasses read from JSON objects with their field types checked.

``fields_of(cls, data)`` splits a JSON object into the keyword arguments of dataclass ``cls``
(each checked against its annotation: a damaged file is refused, not half-believed) and the
keys ``cls`` does not know, which the caller keeps aside (``extra``) so that a run written by a
newer mnistlab still reads, and writes back what it held.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Literal, Union

# What json.loads returns; the free-form parts of a run (a model's config) are typed as this.
JSONValue = Union[str, int, float, bool, None, list["JSONValue"], dict[str, "JSONValue"]]  # noqa: UP007 (a recursive alias needs Union)
JSONObject = dict[str, JSONValue]


class SchemaError(ValueError):
    """A JSON object that does not fit the dataclass it should hold (wrong type of a field)."""


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: object, hint: Any) -> bool:
    """Whether a JSON value fits a field annotation (int is accepted for float, bool is not)."""
    if hint is Any or isinstance(hint, str | typing.ForwardRef):  # JSONValue, Any: anything
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, item)
                                               for k, v in value.items())
    return False  # a nested dataclass: its own from_dict reads it, never this check


def fields_of(cls: type, data: dict[str, JSONValue], *, skip: tuple[str, ...] = ()
              ) -> tuple[dict[str, Any], JSONObject]:
    """(keyword arguments for ``cls``, the keys it does not know). Missing keys are left out
    (the field's default applies); ``skip``: fields the caller reads itself."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "extra" and f.name not in skip]
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in data:
            continue
        value = data[name]
        if not _fits(value, hints[name]):
            raise SchemaError(f"{name} is {value!r}; expected {_shown(hints[name])}")
        kwargs[name] = value
    known = set(names) | set(skip)
    extra = {k: v for k, v in data.items() if k not in known}
    return kwargs, extra


def _shown(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def require_object(value: JSONValue, what: str) -> JSONObject:
    if not isinstance(value, dict):
        raise SchemaError(f"{what} is {value!r}; expected a JSON object")
    return value
