"""Models by name. Every model maps (B, 1, 28, 28) float inputs in [0, 1] to (B, 10) logits.

    model = build_model("cnn")          # the seed's CNN, Keras initialisation
    register("name")(factory)           # factory(**config) -> nn.Module

Softmax is applied only where probabilities are shown (predict, plots), never inside a model.
The built-in models (``seed``: fc, cnn; ``fast``: speedrun, best, strided) register themselves
when this package is imported; their training recipes are presets in ``mnistlab.train.presets``.
"""

from __future__ import annotations

# Imported for their @register calls: the set of built-in models is this explicit list.
from mnistlab.models import fast, seed  # noqa: F401
from mnistlab.models.registry import Factory, available, build_model, factory, register
from mnistlab.models.shapes import IMAGE_SIZE, NUM_CLASSES, count_parameters

__all__ = ["IMAGE_SIZE", "NUM_CLASSES", "Factory", "available", "build_model",
           "count_parameters", "factory", "register"]
