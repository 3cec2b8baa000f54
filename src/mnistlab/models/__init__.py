"""Models by name. Every model maps (B, 1, 28, 28) float inputs in [0, 1] to (B, 10) logits.

    model = build_model("cnn")          # the seed's CNN, Keras initialisation
    register("name")(factory)           # factory(**config) -> nn.Module

Softmax is applied only where probabilities are shown (predict, plots), never inside a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mnistlab.errors import UserError
from mnistlab.models.shapes import IMAGE_SIZE, NUM_CLASSES, count_parameters

if TYPE_CHECKING:  # torch loads with the model modules, not here: data/ imports the shapes
    from torch import nn

Factory = Callable[..., "nn.Module"]
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
    load_builtin()
    return dict(sorted(_DESCRIPTIONS.items()))


def factory(name: str) -> Factory:
    """The function that builds model ``name``; a clear UserError for an unknown name."""
    load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        choices = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown model {name!r}; choose one of: {choices}") from None


def build_model(name: str, **config: Any) -> nn.Module:
    return factory(name)(**config)


def load_builtin() -> None:
    """Import the built-in model modules: their @register (and presets' register_preset)
    calls run on import. Listed here, not scanned, so the set of models is explicit."""
    for module in _BUILTIN:
        importlib.import_module(module)


_BUILTIN = ["mnistlab.models.seed", "mnistlab.models.fast"]

__all__ = ["IMAGE_SIZE", "NUM_CLASSES", "Factory", "available", "build_model", "count_parameters",
           "factory", "load_builtin", "register"]
