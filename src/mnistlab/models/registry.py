"""The model registry: names -> factories, filled by ``@register`` as model modules load.

Apart from ``mnistlab.models`` (the package) so that the built-in model modules can import
``register`` while the package itself imports them, with no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from mnistlab.errors import UserError

Factory = Callable[..., nn.Module]
_REGISTRY: dict[str, Factory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str = "") -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().splitlines()[0]
        return factory

    return deco


def available() -> dict[str, str]:
    """Registered model names and a one-line description of each."""
    return dict(sorted(_DESCRIPTIONS.items()))


def factory(name: str) -> Factory:
    """The function that builds model ``name``; a clear UserError for an unknown name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown model {name!r}; choose one of: {choices}") from None


def build_model(name: str, **config: Any) -> nn.Module:
    return factory(name)(**config)

