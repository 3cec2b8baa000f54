"""Optional extras: import one only where it is needed, and say how to install it if missing.

    onnx = require("onnx", "export", "ONNX export")
    # absent: UserError "ONNX export needs onnx, which is not installed:
    #                    pip install 'mnistlab[export]'"

Library modules import at the top; the exception is a package of an optional extra, which goes
through here so that its absence is one actionable line, not a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mnistlab.errors import UserError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` (shipped by the extra ``extra``) for ``purpose``; a UserError naming
    the ``pip install`` line when it, or something it needs, is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise UserError(f"{purpose} needs {missing}, which is not installed: "
                        f"pip install 'mnistlab[{extra}]'") from None
