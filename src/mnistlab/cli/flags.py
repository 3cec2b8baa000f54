"""Command-line options generated from a config dataclass's fields (and the few options that
have no dataclass), all checked by ``mnistlab.checks``'s rules as they are parsed.

    flags.add_fields(parser, TrainConfig, skip={"model", "model_config", "preset"})
    values = flags.given(args, TrainConfig)     # only the flags the user typed

Each field becomes ``--field-name`` (or its metadata's ``flag``): the type from the annotation
(bool: ``--x / --no-x``), ``choices`` from the metadata, and a help text that says the default,
the allowed values and the bound. The default is None, so a flag left out keeps what the layer
below it chose (a preset, the dataclass default). A value outside its bound stops the parse
with one ``error:`` line (exit 2), naming the flag.

A thread count (metadata ``cores``) is also capped at this machine's cores unless the command
line says ``--threads-oversubscribe``; that needs every flag parsed, so ``check_parsed`` does it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from mnistlab import checks
from mnistlab.errors import UserError

OVERSUBSCRIBE = "--threads-oversubscribe"
OVERSUBSCRIBE_TIMES = 8     # threads per core at most, even when asked to oversubscribe


class Checked(argparse.Action):
    """Stores a value after its rule (``checks.check_value``) accepts it, else a parse error."""

    def __init__(self, option_strings: list[str], dest: str, *, kind: Any,
                 rule: Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.kind, self.rule = kind, rule

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        try:
            # An explicit value must obey the rule even where the default (0: "all") is a
            # sentinel: `--limit 0` is refused, not read as "all".
            checks.check_value(option_string or self.dest, values, self.kind, self.rule,
                               allow_unset=False)
        except UserError as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, values)


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def label_for(cls: type, positional: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """field name -> its flag (or the ``positional`` argument's name), for messages that name
    what the user typed."""
    names = {f.name: flag_name(f) for f in dataclasses.fields(cls)} | dict(positional or {})
    return lambda name: names.get(name, "--" + name.replace("_", "-"))


def _help(meta: Mapping[str, Any], kind: Any, default: Any) -> str:
    parts = []
    if "unset" in meta and default == meta["unset"]:
        parts.append(f"default: {meta['unset_means']}")
    elif kind is bool:
        parts.append(f"default: {'on' if default else 'off'}")
    elif default is not None:
        parts.append(f"default: {default:g}" if isinstance(default, float)
                     else f"default: {default}")
    if meta.get("cores"):
        parts.append(f"{meta.get('min', 0)} to {checks.cores()}, this machine's cores; more "
                     f"with {OVERSUBSCRIBE}")
    elif bound := checks.describe(meta, kind):
        parts.append(bound)
    text = meta.get("help", "")
    text = f"{text} ({'; '.join(parts)})" if parts else text
    return text.replace("%", "%%")           # argparse %-formats help strings


def add_option(parser: argparse.ArgumentParser, flag: str, kind: Any, *, default: Any = None,
               meta: Mapping[str, Any], dest: str | None = None,
               shown_default: Any = None) -> None:
    """One option of type ``kind`` checked by the rule in ``meta`` (mnistlab.checks's keys).

    ``default`` is what the handler receives when the flag is left out; ``shown_default`` is
    what --help says it is (the same, unless a layer below decides)."""
    dest = dest or flag.lstrip("-").replace("-", "_")
    shown = default if shown_default is None else shown_default
    help_text = _help(meta, kind, shown)
    if kind is bool:
        parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                            default=default, help=help_text)
        return
    extra: dict[str, Any] = {}
    if "choices" in meta:
        extra["choices"] = list(meta["choices"])
    if "metavar" in meta:
        extra["metavar"] = meta["metavar"]
    elif kind is int:
        extra["metavar"] = "N"
    parser.add_argument(flag, dest=dest, type=kind if kind in (int, float, str, Path) else str,
                        default=default, action=Checked, kind=kind, rule=meta, help=help_text,
                        **extra)
    if meta.get("cores"):
        _mark_threads(parser, dest, flag)


DEVICE_HELP = "auto (cuda, else mps, else cpu), cpu, cuda or mps"


def add_device(parser: argparse.ArgumentParser, what: str = "where the model runs") -> None:
    """``--device auto|cpu|cuda|mps`` (mnistlab.checks.DEVICES, torch-free); the handler
    resolves it (mnistlab.train.device.resolve_device) before anything is written."""
    parser.add_argument("--device", default="auto", choices=checks.DEVICES,
                        help=f"{what}: {DEVICE_HELP} (default auto)")


def add_fields(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
               only: Iterable[str] | None = None) -> None:
    """One option per field of the dataclass ``cls`` (default None: left out, not set)."""
    kinds = checks.field_kinds(cls)
    skip, only = set(skip), (list(only) if only is not None else None)
    chosen = [f for f in dataclasses.fields(cls) if f.name not in skip
              and (only is None or f.name in only)]
    if only is not None:      # in the order asked for
        chosen.sort(key=lambda f: only.index(f.name))
    for f in chosen:
        default = f.default if f.default is not dataclasses.MISSING else None
        add_option(parser, flag_name(f), kinds[f.name], meta=f.metadata, dest=f.name,
                   shown_default=default)


def given(args: argparse.Namespace, cls: type, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` whose flags were given (not None) on the command line."""
    skip = set(skip)
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, f.name, None) is not None}


def _mark_threads(parser: argparse.ArgumentParser, dest: str, flag: str) -> None:
    """Remember ``dest`` as a thread count for ``check_parsed``; add the opt-out flag once."""
    marked = parser.get_default("_thread_flags") or ()
    if not marked:
        parser.add_argument(OVERSUBSCRIBE, action="store_true",
                            help="allow more threads than this machine's cores")
    parser.set_defaults(_thread_flags=(*marked, (dest, flag)))


def check_parsed(args: argparse.Namespace) -> None:
    """The checks that need the whole command line: thread counts against the cores."""
    over = getattr(args, "threads_oversubscribe", False)
    for dest, flag in getattr(args, "_thread_flags", ()):
        value = getattr(args, dest, None)
        if value is None:
            continue
        if not over:
            checks.at_most(flag, value, checks.cores(),
                           f"the cores of this machine; {OVERSUBSCRIBE} allows more")
        else:   # 999 threads on 2 cores: a load of 370, and a Ctrl-C answered after 18 s
            checks.at_most(flag, value, OVERSUBSCRIBE_TIMES * checks.cores(),
                           f"{OVERSUBSCRIBE_TIMES} times the cores of this machine, even with "
                           f"{OVERSUBSCRIBE}: more threads only wait for each other")
