"""An earlier report kept aside while a new one is made, and put back if the new one stops.

    aside = SetAside(out)           # first puts back what a killed report had set aside
    aside.keep(out / "REPORT.md")   # moved to out/.previous/, recorded in its kept.json
    ...                             # train, analyse, write
    aside.discard()                 # the new report is whole: the old one goes
    aside.restore()                 # or it stopped: what it began is removed, the old is back

A report retrains its runs and rewrites its files in place. Stopped half way (Ctrl-C, SIGTERM,
a training that diverged), it used to leave the earlier report deleted and the runs it was
retraining half made: the last good report was lost. The files and runs a report replaces are
moved (renamed, on the same disk) under ``.previous`` first and come back if it does not finish;
kept.json lists them, so a report killed outright (SIGKILL, a power cut) is undone by the next.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mnistlab import atomic
from mnistlab.runs.files import read_json_object

ASIDE = ".previous"
KEPT = "kept.json"


class SetAside:
    """What a report in ``out`` replaces, kept under ``out/.previous`` until it is whole."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = out / ASIDE
        self.kept: list[str] = []             # paths relative to ``out``, in the order kept
        if (self.root / KEPT).is_file():      # a report killed outright: undo it first
            data = read_json_object(self.root / KEPT, "set-aside list")
            self.kept = [str(p) for p in data.get("kept", [])]
            self.restore()
        elif self.root.exists():              # killed before it recorded anything
            shutil.rmtree(self.root, ignore_errors=True)

    def keep(self, path: Path) -> None:
        """Move ``path`` (a file or folder inside ``out``), if it exists, aside."""
        if not path.exists():
            return
        relative = path.relative_to(self.out)
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        self.kept.append(str(relative))
        atomic.write_json(self.root / KEPT, {"kept": self.kept})

    def restore(self) -> None:
        """Remove what replaced each kept path, put the kept one back, and forget the rest."""
        for relative in reversed(self.kept):
            original, saved = self.out / relative, self.root / relative
            if not saved.exists():
                continue
            _remove(original)
            original.parent.mkdir(parents=True, exist_ok=True)
            saved.rename(original)
        self.kept = []
        shutil.rmtree(self.root, ignore_errors=True)

    def discard(self) -> None:
        """The new report is whole: what it replaced goes."""
        self.kept = []
        shutil.rmtree(self.root, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
