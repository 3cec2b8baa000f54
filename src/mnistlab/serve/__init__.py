"""The draw-a-digit web app (FastAPI): ``create_app(model_source)``; run it with
``mnistlab serve`` or :func:`mnistlab.serve.runner.running_server`."""

from mnistlab.serve.app import create_app

__all__ = ["create_app"]
