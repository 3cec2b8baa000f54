"""Commands that need an optional extra say so in one line instead of a traceback.

The core install (torch, NumPy, the report's libraries) trains, evaluates and predicts; the web
app, ONNX and sweeps live in extras (pyproject.toml), so a library user does not pull a web
server to train a model. A handler decorated with ``@needs_extra("serve")`` turns the
ModuleNotFoundError of a missing extra into a UserError: ``error: ...`` and exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mnistlab.errors import UserError

# Top-level import names that each extra brings (pyproject.toml's optional-dependencies).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "fastapi_offline", "starlette", "uvicorn", "multipart",
              "python_multipart", "httpx"),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "sweep": ("ray",),
    "notebook": ("ipykernel", "nbclient", "nbmake"),
    "tensorboard": ("tensorboard",),
}


def missing_extra(exc: ModuleNotFoundError, extras: tuple[str, ...]) -> str | None:
    """The extra among ``extras`` whose module ``exc`` failed to find, or None."""
    top = (exc.name or "").partition(".")[0]
    return next((e for e in extras if top in EXTRA_MODULES[e]), None)


@contextmanager
def needs_extra(*extras: str) -> Iterator[None]:
    """Context manager (and decorator) for code that imports the libraries of ``extras``.

    Any other ModuleNotFoundError is a bug or a broken install, and propagates unchanged.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        extra = missing_extra(exc, extras)
        if extra is None:
            raise
        raise UserError(f"{exc.name} is not installed: this command needs the optional "
                        f"'{extra}' extra; install it with: pip install 'mnistlab[{extra}]'"
                        ) from None
