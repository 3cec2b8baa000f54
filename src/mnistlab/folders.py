"""Output folders (a run's, an export's), made ready before any work starts, for the command
line and the Python API alike.

A folder that cannot be created or written (under a regular file, in /proc, read-only) is a
``UserError`` here, in one line, instead of an OSError traceback minutes into a run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from mnistlab.errors import UserError


def _cannot(what: str, path: Path, exc: OSError, fix: str) -> UserError:
    return UserError(f"cannot create {what} {path} ({exc.strerror or exc}); {fix}")


def _writable(path: Path, what: str, fix: str) -> None:
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path} is not writable; {fix}")


_HELD: dict[Path, int] = {}      # run folders this process trains in -> their locked handle


def claim(folder: Path) -> Path:
    """Hold ``folder`` as this process's run folder until ``release`` (an advisory lock on the
    folder itself: nothing is written into it); a UserError if another process holds it, so
    two trainings never write into one folder or clear each other's files."""
    folder = folder.resolve()
    if folder in _HELD:
        return folder
    try:
        import fcntl
    except ImportError:                     # no advisory locks here (Windows): nothing held
        return folder
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UserError(f"{folder} is in use: another mnistlab command is training there; "
                        "wait for it to end, or choose another folder with --out DIR") from None
    _HELD[folder] = fd
    return folder


def release(folder: Path) -> None:
    fd = _HELD.pop(folder.resolve(), None)
    if fd is not None:
        os.close(fd)                        # closing the last handle drops the lock


def release_all() -> None:
    for folder in list(_HELD):
        release(folder)


def new_run_folder(out: Path | None, stem: str, *, resume_hint: bool = False,
                   flag: str = "--out") -> Path:
    """``out`` made ready as an empty run folder, or, without ``out``, a new folder
    ``<runs folder>/<stem>-<time>``; returns it resolved and ``claim``ed (``release`` it).
    ``flag``: how the messages name ``out`` (the API's is ``out=``)."""
    from mnistlab import runs
    from mnistlab.paths import runs_dir

    if out is None:
        try:
            return claim(runs.new_run_dir(stem))
        except OSError as exc:
            raise _cannot("a run folder under", runs_dir(), exc,
                          f"set MNISTLAB_RUNS_DIR to a writable folder, or pass {flag} DIR"
                          ) from None
    out = out.expanduser()
    try:
        return _ready(out, flag, resume_hint)
    except BaseException:
        release(out)                        # refused: nothing stays held (the API lives on)
        raise


def _ready(out: Path, flag: str, resume_hint: bool) -> Path:
    fix = f"choose another with {flag} DIR"
    try:
        if out.exists() and not out.is_dir():
            raise UserError(f"{flag} {out} is a file; expected a folder for the run")
        if out.is_dir():
            claim(out)                      # before looking: another run may be starting there
        if out.is_dir() and any(out.iterdir()):
            if not holds_nothing_of_value(out):
                raise UserError(f"{flag} {out} already holds files; "
                                + (_resume_hint(out) if resume_hint
                                   else "choose a new or empty folder"))
            # a run stopped before its first epoch was saved: its config.json repeats nothing
            # that this command does not write again
            clear_failed_start(out, created=False)
            sys.stderr.write(f"note: reusing {out}: it held no saved epoch, only what a run "
                             "stopped before its first epoch leaves (config.json, logs)\n")
        out.mkdir(parents=True, exist_ok=True)
        claim(out)
    except OSError as exc:
        raise _cannot("the run folder", out, exc, fix) from None
    _writable(out, "the run folder", fix)
    return out.resolve()


@contextlib.contextmanager
def training_in(folder: Path, *, created: bool, fresh: bool = True) -> Iterator[Path]:
    """Train in ``folder`` (already ``claim``ed): released at the end, and after a failure
    (a UserError: refused, diverged) or an interrupt (Ctrl-C in the engine probe, the warm-up or
    the first epoch) of a ``fresh`` run that saved no epoch, what it wrote is removed (the
    folder too when this command ``created`` it)."""
    try:
        yield folder
    except (UserError, KeyboardInterrupt):
        if fresh:
            clear_failed_start(folder, created)
        raise
    finally:
        release(folder)


def clear_failed_start(folder: Path, created: bool) -> None:
    """After a training that failed before its first epoch was saved: remove what it wrote
    (config.json, logs), and the folder itself when this command ``created`` it, so a
    refused or diverged start leaves nothing behind. A folder with a saved epoch is kept."""
    if not folder.is_dir() or not holds_nothing_of_value(folder):
        return
    for leftover in folder.iterdir():
        if leftover.is_dir():
            for events in leftover.iterdir():
                events.unlink()
            leftover.rmdir()
        else:
            leftover.unlink()
    if created:
        folder.rmdir()


def holds_nothing_of_value(folder: Path) -> bool:
    """True for a folder holding at most a config.json, atomic writes' temp files and
    TensorBoard event files (what a run stopped before its first epoch leaves): training into
    it afresh loses nothing."""
    return all(_of_no_value(p) for p in folder.iterdir())


def _of_no_value(path: Path) -> bool:
    from mnistlab import runs

    if path.is_dir():   # TensorBoardLogger's folder: the curves of epochs that were not saved
        return path.name == "tensorboard" and all(
            q.is_file() and q.name.startswith("events.out.tfevents.") for q in path.iterdir())
    return path.is_file() and (path.name == runs.CONFIG
                               or (path.name.startswith(".") and path.name.endswith(".tmp")))


def _resume_hint(out: Path) -> str:
    from mnistlab import runs

    try:
        model = runs.read_config(out).model
    except UserError:
        return "choose a new folder, or pass --resume if it holds a run to continue"
    resume = shlex.join(["mnistlab", "train", model, "--out", str(out), "--resume"])
    return f"continue that run with `{resume}`, or choose a new folder"


def output_folder(path: str | os.PathLike[str], flag: str, placeholder: str = "DIR") -> Path:
    """``path`` created if need be and writable, for files written into it later."""
    folder = Path(path).expanduser()
    fix = f"choose another with {flag} {placeholder}"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file; expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot("the folder", folder, exc, fix) from None
    _writable(folder, "the folder", fix)
    return folder


def output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path``'s folder created if need be and writable; ``path`` itself not a folder."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{flag} {target} is a folder; expected a file name")
    if target.parent.exists() and not target.parent.is_dir():
        raise UserError(f"cannot write {flag} {target}: {target.parent} is a file, not a "
                        f"folder; choose another with {flag} FILE")
    output_folder(target.parent, flag, "FILE")
    return target
