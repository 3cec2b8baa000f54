"""Optional extras: a missing one is one UserError naming the pip install line."""

from __future__ import annotations

import sys

import pytest

from mnistlab import extras
from mnistlab.errors import UserError
from mnistlab.inference import export


def test_present_module_is_returned() -> None:
    assert extras.require("json", "export", "anything").__name__ == "json"


def test_missing_module_names_the_extra() -> None:
    with pytest.raises(UserError, match=r"^ONNX export needs no_such_module_xyz, which is not "
                                        r"installed: pip install 'mnistlab\[export\]'$"):
        extras.require("no_such_module_xyz", "export", "ONNX export")


def test_export_without_the_extra_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import onnxscript` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(UserError, match=r"needs onnxscript.*mnistlab\[export\]") as err:
        export.export_onnx(object(), "unused.onnx")
    assert "\n" not in str(err.value)
