"""The `mnistlab` command: a thin layer that parses, calls the library and prints.

Each module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
subcommands and sets ``func`` to a handler ``(args) -> int``. Handlers import heavy libraries
(torch, matplotlib) inside themselves, so that ``mnistlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from mnistlab import __version__
from mnistlab.errors import Note, UserError

COMMAND_MODULES = [
    "mnistlab.cli.data",
    "mnistlab.cli.models",
    "mnistlab.cli.train",
    "mnistlab.cli.mechanics",
    "mnistlab.cli.report",
    "mnistlab.cli.use",
    "mnistlab.cli.realworld",
    "mnistlab.cli.calibrate",
    "mnistlab.cli.perf",
    "mnistlab.cli.profile",
    "mnistlab.cli.abuse",
    "mnistlab.cli.sweep",
]


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (and exit 2) instead of a usage dump,
    and that adds deferred options (``defer``) only when its command is parsed or helped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._options: set[str] = set()      # filled by add_argument, which __init__ calls (-h)
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []
        self.commands: dict[str, argparse.ArgumentParser] = {}   # set by build_parser

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self._options.update(action.option_strings)
        return action

    def option_strings(self) -> set[str]:
        """Every option this parser takes (``--json``, ``-h``, ...), deferred ones included."""
        self._add_deferred()
        return set(self._options)

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        """Run ``add(self)`` before this parser is first used: options generated from a config
        dataclass whose module imports torch, so that `mnistlab --help` stays instant."""
        self._deferred.append(add)

    def _add_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_deferred()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._add_deferred()
        return super().format_help()

    def format_usage(self) -> str:
        self._add_deferred()
        return super().format_usage()

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # a value outside ``choices`` gets the same message as the config's own validation
        if action.choices is not None and value not in action.choices:
            from mnistlab.checks import one_of

            name = action.option_strings[-1] if action.option_strings else action.dest
            if action.dest == "command":              # build_parser's subcommands
                name = "the command"
            try:
                one_of(name, value, action.choices)
            except UserError as exc:
                raise argparse.ArgumentError(None, str(exc)) from None

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # argparse reports them from the top parser; the command's own --help is the one
            # that lists what it takes ("mnistlab predict --help", not "mnistlab --help")
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            hint = ("; its options go before or after the run and the pictures, not between "
                    "them" if command == "predict" else "")
            message = f"unrecognized arguments: {' '.join(extras)} (see `{prog} --help`{hint})"
            sys.stderr.write(f"error: {message}\n")
            raise BadArgument(message)
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        message = f"{message} (see `{self.prog} --help`)"
        sys.stderr.write(f"error: {message}\n")
        raise BadArgument(message)


class BadArgument(SystemExit):
    """A bad argument, already reported on standard error; exit 2."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


def _asks_json(parser: Parser, argv: list[str]) -> bool:
    """Whether ``argv``, which did not parse, asks its command for ``--json`` as argparse reads
    it (``--json``, ``--json=...`` or an unambiguous prefix such as ``--js``, before ``--``),
    for a command that has the option."""
    words = argv[:argv.index("--")] if "--" in argv else argv
    command = next((w for w in words if not w.startswith("-")), None)
    sub = parser.commands.get(command) if command else None
    if not isinstance(sub, Parser):
        return False
    options = sub.option_strings()
    if "--json" not in options:
        return False
    return any(w.split("=", 1)[0] == "--json" or (
        len(w) > 2 and "=" not in w and [o for o in options if o.startswith(w)] == ["--json"])
        for w in words)


def _json_error(message: str) -> None:
    """With ``--json``, an error is also the closing JSON line, so that a script reading
    standard output learns why there is no result (the ``error:`` line stays on stderr)."""
    from mnistlab import console

    console.emit_json({"error": message, "exit_code": 2})


def _json_interrupted(args: argparse.Namespace, emitted: int) -> None:
    """With ``--json``, an interrupted command still closes with a JSON line (a script reading
    standard output learns it was stopped, not that the last progress line is its result)."""
    from mnistlab import console

    if getattr(args, "json", False) and console.json_lines() == emitted:
        console.emit_json({"error": "terminated" if _TERMINATED else "interrupted",
                           "exit_code": 143 if _TERMINATED else 130})


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
    parser.commands = dict(sub.choices)
    return parser


def configure_openmp() -> None:
    """How idle OpenMP threads wait: a brief spin on a quiet machine, sleep on a busy one
    (``mnistlab.machine.choose_openmp_wait``). libgomp reads the variables when torch is first
    imported, so this must run before that."""
    if "torch" not in sys.modules:
        from mnistlab.machine import choose_openmp_wait

        choose_openmp_wait()


def _notes_as_lines(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that prints a Note as ``note: MESSAGE`` and passes on others."""
    def show_note(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
        if issubclass(category, Note):
            sys.stderr.write(f"note: {message}\n")
        else:
            show(message, category, filename, lineno, file, line)
    return show_note


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler's stop): handled as Ctrl-C is."""


_TERMINATED: list[int] = []   # the SIGTERMs this command received (a command catches them)


def _raise_terminated(signum: int, frame: Any) -> None:
    _TERMINATED.append(signum)
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    """Run one command. SIGTERM ends it as Ctrl-C does (what it saved kept, a run that saved
    no epoch removed, the resume command printed), with exit 143: killed outright instead, a
    training left a half-made run folder and said nothing."""
    from mnistlab.folders import release_all

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    _TERMINATED.clear()
    try:
        code = _main(argv)
        return 143 if code == 130 and _TERMINATED else code
    except KeyboardInterrupt as exc:   # during start-up (torch's import, parsing): no traceback
        sys.stderr.write("interrupted\n")
        code = 143 if isinstance(exc, Terminated) else 130
        if "--json" in (sys.argv[1:] if argv is None else argv):   # closed as later on
            sys.stdout.write(json.dumps({"error": "terminated" if code == 143 else
                                         "interrupted", "exit_code": code}) + "\n")
        return code
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        release_all()              # the run folders this command held (a test calls main often)


def _main(argv: list[str] | None) -> int:
    configure_openmp()
    from mnistlab.cli.flags import check_parsed

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:     # --help, --version, or a bad argument (already reported)
        if isinstance(exc, BadArgument) and _asks_json(parser,
                                                       sys.argv[1:] if argv is None else argv):
            _json_error(exc.message)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mnistlab import console

    emitted = console.json_lines()
    try:
        with warnings.catch_warnings():
            # a library's Note (an unverifiable old file, ...) is one line here, not two
            warnings.simplefilter("default", Note)
            warnings.showwarning = _notes_as_lines(warnings.showwarning)
            check_parsed(args)
            code = int(args.func(args) or 0)
            if code == 130:          # the command caught the interrupt and said what it kept
                _json_interrupted(args, emitted)
            return code
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        # unless the command closed with its own JSON (export's {"written": false, ...})
        if getattr(args, "json", False) and console.json_lines() == emitted:
            _json_error(str(exc))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        _json_interrupted(args, emitted)
        return 130
    except BrokenPipeError:
        return 0
