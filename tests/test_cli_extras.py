"""Commands whose optional extra is missing end in one `error:` line and exit code 2."""

from __future__ import annotations

import sys

import pytest

from mnistlab.cli import main
from mnistlab.cli.extras import needs_extra
from mnistlab.errors import UserError


def test_missing_extra_names_the_pip_command() -> None:
    @needs_extra("serve")
    def handler() -> None:
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    with pytest.raises(UserError, match=r"fastapi .*pip install 'mnistlab\[serve\]'"):
        handler()


def test_another_missing_module_is_not_hidden() -> None:
    # onnx belongs to the export extra, not serve: a bug or broken install, so it propagates.
    with pytest.raises(ModuleNotFoundError), needs_extra("serve"):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")


def test_serve_without_fastapi_exits_2(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # None in sys.modules makes `import fastapi` fail as if it were not installed; dropping the
    # serve package makes the command import it afresh. monkeypatch puts both back.
    monkeypatch.setitem(sys.modules, "fastapi", None)
    serve = [m for m in sys.modules if m == "mnistlab.serve" or m.startswith("mnistlab.serve.")]
    for name in serve:
        monkeypatch.delitem(sys.modules, name)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: fastapi is not installed: this command needs the optional 'serve' "
                   "extra; install it with: pip install 'mnistlab[serve]'"]
