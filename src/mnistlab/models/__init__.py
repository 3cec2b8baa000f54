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
    _import_builtin()
    return dict(sorted(_DESCRIPTIONS.items()))


def build_model(name: str, **config: Any) -> nn.Module:
    _import_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        choices = ", ".join(sorted(_REGISTRY))
        raise UserError(f"unknown model {name!r}; choose one of: {choices}") from None
    return factory(**config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _import_builtin() -> None:
    # Importing a module runs its @register decorators; modules are listed here, not scanned.
    import importlib

    for module in _BUILTIN:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


_BUILTIN = ["mnistlab.models.seed", "mnistlab.models.fast"]
