"""Named training recipes: a preset maps a model name to overrides of ``TrainConfig``.

    overrides = preset_overrides("seed", "cnn")   # {"optimizer": "adam", "lr": 1e-3, ...}

A preset is data, not code: ``register_preset`` adds one (all three built-in ones, ``seed``,
``speedrun`` and ``best``, are below) and ``mnistlab train MODEL --preset NAME`` applies it
before the flags.

The ``seed`` preset is what the seed report ran:

- fc: SGD, learning rate **0.1**. The report's text says 0.01, but its own logs (epoch 5: train
  accuracy 0.9720, loss 0.1013; test 0.9689, loss 0.1065) are what 0.1 gives: re-run in Keras
  3.15 + TensorFlow 2.21 (batch 64, 5 epochs), lr 0.1 gives test 0.9695 / loss 0.1066 and lr
  0.01 gives test 0.9226. The 0.01 is Keras's SGD default, probably where the text took it
  from; the numbers the report shows came from 0.1, so that is what we reproduce.
- cnn: Adam with Keras's defaults (lr 1e-3, epsilon 1e-7); precision ``auto``: bf16 where the
  CPU has native bf16, else fp32; config.json records which. The CNN trains through mnistlab's
  fused step (``mnistlab.fused``, in either precision; in fp32 with Winograd convolutions where
  the probe finds them faster; ``--engine autograd`` gives PyTorch's own step instead). Here
  (AVX-512 BF16) bf16 autocast alone trains 2.2x faster than fp32 and the fused step about
  1.9x faster again, keeping the seed's accuracy (98.55%).
  The FC model stays fp32: an epoch takes about a second either way.
- both: batch 64 (938 steps per epoch, the last one short, as Keras does), 5 epochs, inputs in
  [0, 1], Keras's initialisation (Glorot-uniform weights, zero biases).
"""

from __future__ import annotations

from typing import Any

from mnistlab.errors import UserError

# preset name -> model name -> TrainConfig field overrides
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_preset(name: str, model: str, description: str = "", **overrides: Any) -> None:
    """Add (or replace) the recipe ``name`` for ``model``; ``overrides`` are TrainConfig fields."""
    _PRESETS.setdefault(name, {})[model] = dict(overrides)
    if description:
        _DESCRIPTIONS[name] = description


def available_presets() -> dict[str, list[str]]:
    """Preset names and the models each one has a recipe for."""
    return {name: sorted(models) for name, models in sorted(_PRESETS.items())}


def has_preset(name: str, model: str) -> bool:
    return model in _PRESETS.get(name, {})


def preset_overrides(name: str, model: str) -> dict[str, Any]:
    """The overrides of preset ``name`` for ``model``; a clear UserError when there is none."""
    if name not in _PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(_PRESETS))}")
    models = _PRESETS[name]
    if model not in models:
        raise UserError(f"preset {name!r} has no recipe for model {model!r}; "
                        f"it has: {', '.join(sorted(models))}")
    return dict(models[model])


def describe(name: str) -> str:
    return _DESCRIPTIONS.get(name, "")


SEED_DESCRIPTION = ("what the seed report ran: fc SGD lr 0.1 (its logs, not the 0.01 its text "
                    "says), cnn Adam 1e-3; batch 64, 5 epochs, Keras initialisation")

register_preset("seed", "fc", SEED_DESCRIPTION, optimizer="sgd", lr=0.1, momentum=0.0,
                batch_size=64, epochs=5, schedule="constant", init="keras", precision="fp32")
register_preset("seed", "cnn", SEED_DESCRIPTION, optimizer="adam", lr=1e-3, eps=1e-7,
                batch_size=64, epochs=5, schedule="constant", init="keras", precision="auto")

# speedrun: one epoch, batch 128 (469 steps), Adam with a one-cycle schedule peaking at 1e-2,
# bf16 where the CPU has it natively (``auto``; where it does not, bf16 is emulated and slower
# than fp32, so fp32), no per-epoch evaluation (it is not training time).
_SPEEDRUN_RECIPE: dict[str, Any] = dict(
    epochs=1, batch_size=128, optimizer="adam", lr=1e-2, eps=1e-8, schedule="onecycle",
    precision="auto", eval_each_epoch=False, eval_batch_size=1000, augment="none")
register_preset("speedrun", "speedrun",
                "time-to-99%: 1 epoch, batch 128, Adam one-cycle 1e-2, bf16 where native (sprint: "
                "batch 192, peak 1.5e-2, label smoothing 0.1, Adam betas 0.7/0.9, no beta "
                "cycling)",
                **_SPEEDRUN_RECIPE)
# sprint, what `mnistlab speedrun` trains: the fused step (no BatchNorm), and settings chosen
# on a validation split (the last 5,000 training images; 3-5 seeds each; 2026-12-06): label
# smoothing 0.1 (99.22% against 98.94% without), Adam's betas 0.7/0.9 as the published
# recipe has them (99.18% against 99.04% with torch's), no beta1 cycling, and batch 192 at a
# peak of 1.5e-2 (99.17%, in 0.79x the time of batch 128's 99.18%; 313 steps an epoch).
register_preset("speedrun", "sprint", **(_SPEEDRUN_RECIPE | dict(
    batch_size=192, lr=1.5e-2, label_smoothing=0.1, beta1=0.7, beta2=0.9,
    cycle_momentum=False)))
# best: 12 epochs of random affine augmentation (rotation, scale, shift), SGD + Nesterov with a
# one-cycle schedule, label smoothing 0.1; bf16 where native (``auto``), as for speedrun.
_BEST_RECIPE: dict[str, Any] = dict(
    batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
    schedule="onecycle", label_smoothing=0.1, augment="affine", precision="auto",
    eval_batch_size=1000)
register_preset("best", "best",
                "accuracy: 12 epochs (strided: 15), affine augmentation, SGD Nesterov one-cycle "
                "0.1, label smoothing 0.1, bf16 where native", epochs=12, **_BEST_RECIPE)
# The strided model (no pooling: an ensemble's other design) takes the same recipes with 15
# epochs, which still fit the 10-minute budget a member has here: 15 epochs of 55,000 images
# took 338-581 s (1,420-2,440 images/s in bf16 on 2 shared cores), about best's 12.
register_preset("best", "strided", epochs=15, **_BEST_RECIPE)
# robust: best's recipe with the "robust" augmentation (mnistlab.data.augment): for the digits
# people draw and photograph, whose 28x28 after preprocessing is thicker, thinner, fainter,
# more slanted or more warped than MNIST's. The last 5,000 training images are held out to
# calibrate its confidence (mnistlab.train.calibration).
_ROBUST_RECIPE: dict[str, Any] = {**_BEST_RECIPE, "augment": "robust", "validation": 5000}
register_preset("robust", "best",
                "pictures people make: best's recipe with robust augmentation (warps, elastic, "
                "stroke width, blur, contrast, noise), 12 epochs (strided: 15), bf16 where native",
                epochs=12, **_ROBUST_RECIPE)
register_preset("robust", "strided", epochs=15, **_ROBUST_RECIPE)
