"""The model registry: names -> factories, filled by ``@register`` as model modules load.

Apart from ``mnistlab.models`` (the package) so that the built-in model modules can import
``register`` while the package itself imports them, with no import cycle.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from mnistlab import checks
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



IMAGE_SHAPE = (1, 28, 28)        # what every registered model reads (MNIST, Fashion-MNIST)


def build_checked(name: str, **config: Any) -> nn.Module:
    """``build_model``, with a bad setting (an unknown key, a width that is not a whole number
    >= 1, a model too deep for a 28x28 picture) as one UserError line instead of a traceback.
    The trial picture it reads draws no random numbers; the build does (weight init), so a
    caller that must keep the seed's stream forks the generator around this call."""
    factory(name)
    defaults = {k: p.default for k, p in inspect.signature(_REGISTRY[name]).parameters.items()}
    unknown = sorted(set(config) - set(defaults))
    if unknown:                    # named, with what it takes: not Python's "unexpected keyword"
        takes = ", ".join(sorted(defaults)) or "no settings"
        raise UserError(f"bad model config for {name!r}: no setting "
                        f"{', '.join(map(repr, unknown))}; it takes {takes}")
    for key, value in config.items():
        _check_setting(f"bad model config for {name!r}: {key}",
                       defaults.get(key, inspect.Parameter.empty), value)
    try:
        model = build_model(name, **config)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, *IMAGE_SHAPE))
        model.train(was_training)
    except (TypeError, ValueError) as exc:              # an unknown key, a value refused
        raise UserError(f"bad model config for {name!r}: {exc}") from None
    except RuntimeError as exc:                         # layers that refuse the picture
        reason = " ".join(str(exc).split())[:160]
        raise UserError(f"bad model config for {name!r}: it cannot read a 28x28 picture "
                        f"({reason}); use fewer or smaller layers") from None
    if tuple(out.shape) != (2, 10):
        raise UserError(f"bad model config for {name!r}: it answers {tuple(out.shape[1:])} "
                        "per picture, not 10 scores")
    return model


def _check_setting(label: str, default: Any, value: Any) -> None:
    """UserError when ``value`` cannot stand where the factory's default is ``default``."""
    if isinstance(default, bool) or default is inspect.Parameter.empty:
        return
    if isinstance(default, int):
        checks.positive_int(label, value)
    elif isinstance(default, tuple):
        if not (isinstance(value, list | tuple) and value and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise UserError(f"{label} must be a list of whole numbers >= 1, got {value!r}")
    elif isinstance(default, float):
        checks.in_range(label, value, 0, 1)
    elif isinstance(default, str) and not isinstance(value, str):
        raise UserError(f"{label} must be a string, got {value!r}")
