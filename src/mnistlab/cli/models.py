"""`mnistlab summary MODEL` (Keras-style table) and `mnistlab models` (names and presets)."""

from __future__ import annotations

import argparse
import json

from mnistlab import console


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="a model's layers, output shapes, parameters, mult-adds",
                       description="Keras-style summary of a registered model: layer, output "
                                   "shape, parameters; totals; multiply-adds per image.")
    p.add_argument("model", metavar="MODEL", help="a model name (see `mnistlab models`)")
    p.add_argument("--config", default=None, metavar="JSON",
                   help='model settings as a JSON object, e.g. \'{"hidden": 256}\'')
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(func=summary)

    p = sub.add_parser("models", help="the registered models and training presets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=models)


def parse_model_config(text: str | None) -> dict:
    from mnistlab.errors import UserError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"model config is not valid JSON ({exc.msg}); "
                        'expected an object such as \'{"hidden": 256}\'') from None
    if not isinstance(value, dict):
        raise UserError('model config must be a JSON object such as \'{"hidden": 256}\'')
    return value


def summary(args: argparse.Namespace) -> int:
    from mnistlab.models.registry import build_checked
    from mnistlab.models.summary import render, summarize

    model = build_checked(args.model, **parse_model_config(args.config))
    result = summarize(model, args.model)
    if args.json:
        console.emit_json(result.to_dict())
    else:
        print(render(result))
    return 0


def models(args: argparse.Namespace) -> int:
    from mnistlab.models import available
    from mnistlab.train.presets import available_presets, describe

    names = available()
    presets = available_presets()
    if args.json:
        console.emit_json({"models": names,
                           "presets": {k: {"models": v, "description": describe(k)}
                                       for k, v in presets.items()}})
        return 0
    print("models:")
    for name, text in names.items():
        print(f"  {name:<12} {text}")
    print("presets (--preset NAME):")
    for name, for_models in presets.items():
        print(f"  {name:<12} for {', '.join(for_models)}: {describe(name)}")
    return 0
