"""The `mnistlab` command: a thin layer that parses, calls the library and prints.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` to a handler ``(args) -> int``. Handlers import heavy libraries
(torch, matplotlib) inside themselves, so that ``mnistlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mnistlab import __version__
from mnistlab.errors import UserError

COMMAND_MODULES = [
    "mnistlab.cli.data",
    "mnistlab.cli.models",
    "mnistlab.cli.train",
    "mnistlab.cli.mechanics",
    "mnistlab.cli.report",
    "mnistlab.cli.use",
    "mnistlab.cli.perf",
    "mnistlab.cli.sweep",
]


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (and exit 2) instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def build_parser() -> Parser:
    parser = Parser(prog="mnistlab", description="Train, compare and use handwritten-digit "
                    "classifiers: the MNIST lab study, reproduced and surpassed on a CPU.")
    parser.add_argument("--version", action="version", version=f"mnistlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not written yet
                continue
            raise
        module.register(sub)
    return parser


def configure_openmp() -> None:
    """How idle OpenMP threads wait: a brief spin on a quiet machine, sleep on a busy one
    (``mnistlab.machine.choose_openmp_wait``). libgomp reads the variables when torch is first
    imported, so this must run before that."""
    if "torch" not in sys.modules:
        from mnistlab.machine import choose_openmp_wait

        choose_openmp_wait()


def main(argv: list[str] | None = None) -> int:
    configure_openmp()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
