"""Models by name. Every model maps (B, 1, 28, 28) float inputs in [0, 1] to (B, 10) logits.

    model = build_model("cnn")          # the seed's CNN, Keras initialisation
    register("name")(factory)           # factory(**config) -> nn.Module

Softmax is applied only where probabilities are shown (predict, plots), never inside a model.
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_builtin() -> None:
    """Import the built-in model modules: their @register (and presets' register_preset)
    calls run on import. Listed here, not scanned, so the set of models is explicit."""
    import importlib

    for module in _BUILTIN:
        importlib.import_module(module)


_BUILTIN = ["mnistlab.models.seed", "mnistlab.models.fast"]
