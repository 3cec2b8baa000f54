"""The draw-a-digit web app: one page, one prediction endpoint, health, offline API docs.

    app = create_app("runs/cnn-...")        # a run folder or name, an .onnx file, a Predictor,
                                            # or None for the best finished run

Routes: ``GET /`` the page (static/index.html, all assets local); ``POST /api/predict`` an
image (multipart field ``file``, or the raw body as image/png or image/jpeg) -> JSON;
``GET /healthz``; ``GET /docs`` (Swagger UI from local assets, via fastapi-offline) and
``/openapi.json``, so no page of this app makes a request beyond the server it came from.

Every bad input gets a 4xx JSON body ``{"error": <code>, "detail": <what was wrong>}``.

The work a request can cost is bounded before decoding: the upload's bytes, the pixels its
header declares, and the pixels actually decoded (a JPEG is decoded reduced, by draft); at
most ``DECODE_SLOTS`` pictures are decoded at once, and memory is trimmed after large ones.
A client that goes away mid-upload is an ordinary event: one log line, no traceback.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mnistlab import __version__
from mnistlab.errors import UserError
from mnistlab.inference.predict import (
    ModelOutputError,
    NumberPrediction,
    Predictor,
    load_predictor,
    read_picture,
)
from mnistlab.inference.preprocess import (
    to_png,
)
from mnistlab.serve.decoding import (
    MAX_DECODED_PIXELS,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    DecodeGate,
    refusal,
)
from mnistlab.serve.guard import CLOSED_SLOW
from mnistlab.serve.lab import lab_router
from mnistlab.train.device import resolve_device

STATIC = Path(__file__).parent / "static"
MULTIPART_OVERHEAD = 64 * 1024          # boundaries and part headers around the file
RAW_TYPES = {"image/png", "image/jpeg", "application/octet-stream"}
FILE_TYPES = RAW_TYPES | {""}           # a multipart part may carry no type at all


class TopEntry(BaseModel):
    digit: int
    probability: float


class PredictionOut(BaseModel):
    digit: int = Field(description="the most likely digit")
    probability: float = Field(description="its probability")
    probabilities: list[float] = Field(description="ten probabilities, digits 0 to 9")
    top: list[TopEntry]
    image_28: list[list[float]] = Field(description="the 28x28 the model saw, rows of [0, 1]")
    image_28_png: str = Field(description="the same as a PNG data URL")
    inverted: bool = Field(description="dark ink on light paper was inverted")
    notes: list[str]
    unsure: bool | None = Field(None, description="below the run's calibrated threshold, or "
                                "unlike the digits it learnt; null: the run is not calibrated")
    unsure_reason: str | None = Field(None, description="why it is unsure: 'not confident' "
                                      "or 'unlike the digits it learnt'; null when it is not")
    calibrated: bool = False


class NumberDigitOut(BaseModel):
    digit: int
    probability: float
    unsure: bool | None = None
    unsure_reason: str | None = None
    bbox: list[int] = Field(description="the digit's box on the picture: top, left, bottom, "
                                        "right")
    top: list[TopEntry]


class NumberMarkOut(BaseModel):
    mark: str = Field(description='".", ":" or "-", written between two digits; "-" also '
                                  'before the first, a minus sign')
    before: int = Field(description="the index of the digit it stands before")
    bbox: list[int] = Field(description="its box on the picture: top, left, bottom, right")


class NumberOut(BaseModel):
    """Several digits side by side: the number they spell, each digit read alone."""
    file: str
    number: str = Field(description="the digits read, left to right, with the marks between "
                                    "them in place: 34, 06.12, 12:30, -5")
    probability: float = Field(description="the chance that every digit is right (their "
                                           "probabilities multiplied)")
    unsure: bool | None = None
    unsure_reason: str | None = Field(None, description="the first unsure digit's reason and "
                                      "place: 'not confident (digit 2 of 3)'")
    size: list[int] = Field(description="the picture's height and width as it was read (at "
                            "most 1,024 px on a side), in the boxes' pixels")
    digits: list[NumberDigitOut]
    marks: list[NumberMarkOut] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="what reading the picture left "
                             "out or changed: a ruled line, a ring round a digit")
    calibrated: bool = False
    digits_28_png: list[str] = Field(description="each digit's 28x28 as a PNG data URL")


class ErrorOut(BaseModel):
    error: str
    detail: str


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": f"a PNG or JPEG of at most {MAX_UPLOAD_BYTES // 1024 // 1024} MiB",
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _resolve(model_source: Any, device: str = "cpu") -> Predictor:
    if model_source is None or isinstance(model_source, str | os.PathLike):
        if model_source is not None and str(model_source).endswith(".onnx"):
            return load_predictor(onnx=model_source)      # onnxruntime: the CPU
        return load_predictor(model_source, device=resolve_device(device))
    if isinstance(model_source, Predictor):
        return model_source
    raise TypeError(f"model_source must be a run, an .onnx path or a Predictor, "
                    f"not {type(model_source).__name__}")


log = logging.getLogger("uvicorn.error")


async def _read_capped(stream: Any, limit: int) -> bytes:
    """Read a body stream, stopping as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the upload is larger than {limit:,} bytes; "
                           "send a smaller PNG or JPEG")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form_file(form: Any) -> bytes:
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "no_file", "the form has no file field named 'file'; send the "
                       "image as multipart field 'file' or as the raw body")
    part_type = (upload.content_type or "").split(";")[0].strip().lower()
    if part_type not in FILE_TYPES:
        raise ApiError(415, "unsupported_type", f"the file is {part_type}; expected "
                       "image/png or image/jpeg")
    return await upload.read(MAX_UPLOAD_BYTES + 1)


async def _upload_bytes(request: Request) -> bytes:
    """The image bytes of a request (multipart field ``file`` or the raw body)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
        raise ApiError(413, "too_large", f"the upload is {int(length):,} bytes; the limit is "
                       f"{MAX_UPLOAD_BYTES:,}; send a smaller PNG or JPEG")
    if ctype == "multipart/form-data":
        if not length.isdigit():
            # Starlette spools a form's files whole before we could count them: without a
            # declared length that would be unbounded. Browsers and HTTP clients declare it.
            raise ApiError(411, "length_required", "a multipart upload needs a Content-Length "
                           "header; or send the image as the raw body")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except ClientDisconnect:
            raise
        except Exception as exc:  # starlette raises MultiPartException and HTTPException
            raise ApiError(400, "bad_form", f"unreadable multipart form ({exc}); send the "
                           "image as the form field 'file'") from None
        try:
            data = await _form_file(form)
        finally:
            await form.close()  # removes the spooled temporary file
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, "too_large", f"the file is larger than {MAX_UPLOAD_BYTES:,} "
                           "bytes; send a smaller PNG or JPEG")
    elif ctype in RAW_TYPES:
        data = await _read_capped(request.stream(), MAX_UPLOAD_BYTES)
    else:
        raise ApiError(415, "unsupported_type", f"content type {ctype or '(none)'!r} is not "
                       "accepted; send image/png or image/jpeg as the body, or a multipart "
                       "form with the field 'file'")
    if not data:
        raise ApiError(400, "empty_body", "the request holds no image bytes; send a PNG or JPEG")
    return data


def _predict_payload(data: bytes, predictor: Predictor) -> dict[str, Any]:
    try:
        reading = read_picture(predictor, data, name="upload", max_pixels=MAX_UPLOAD_PIXELS,
                               max_decoded_pixels=MAX_DECODED_PIXELS)
    except ModelOutputError as exc:
        raise ApiError(500, "model_error", str(exc)) from None
    except UserError as exc:
        raise ApiError(*refusal(exc), str(exc)) from None
    calibrated = predictor.calibration is not None
    if isinstance(reading, NumberPrediction):
        # several digits side by side: each read alone, with its box on the drawing
        return {**reading.to_json(), "calibrated": calibrated,
                "digits_28_png": [_png_uri(d.pre.image) for d in reading.digits]}
    pre = reading.pre
    return {
        "digit": reading.digit, "probability": reading.probability,
        "probabilities": reading.probabilities,
        "top": [{"digit": d, "probability": p} for d, p in reading.top],
        "unsure": reading.unsure, "unsure_reason": reading.unsure_reason,
        "calibrated": calibrated,
        "image_28": [[round(float(v), 4) for v in row] for row in pre.image],
        "image_28_png": _png_uri(pre.image),
        "inverted": pre.inverted, "notes": pre.notes,
    }


def _png_uri(image28: Any) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png(image28)).decode("ascii")


def create_app(model_source: Any = None, device: str = "cpu") -> FastAPIOffline:
    """The web app around one model (see the module docstring for ``model_source``).

    ``device`` (mnistlab.train.device.DEVICES): where a run's model answers /api/predict; the
    lab's pages (/lab: comparisons, activations) load their models on the CPU."""
    predictor = _resolve(model_source, device)
    backend = predictor.backend
    app = FastAPIOffline(
        title="mnistlab", version=__version__,
        description="Draw a digit, get the model's ten probabilities.",
        # Swagger UI would otherwise ask validator.swagger.io to check the schema; ReDoc
        # fetches its logo from its CDN whatever we do, so it is left out.
        swagger_ui_parameters={"validatorUrl": None}, redoc_url=None,
    )
    app.state.predictor = predictor
    gate = DecodeGate()          # shared with the lab's routes: DECODE_SLOTS pictures at once

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # an unknown path or method answers in the API's one shape, {"error", "detail"}
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code,
                                                                 f"http_{exc.status_code}")
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # Nobody is left to answer: one line in the log (unless the guard that closed a too
        # slow upload logged it already), and a response nobody will read.
        if not request.scope.get(CLOSED_SLOW):
            who = (f"{request.client.host}:{request.client.port}" if request.client
                   else "a client")
            log.info("%s disconnected before its request to %s was read whole", who,
                     request.url.path)
        return Response(status_code=400)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness, and which model answers."""
        return {"status": "ok", "model": Path(predictor.name).name, "backend": backend}

    @app.post("/api/predict", response_model=PredictionOut | NumberOut, openapi_extra=_BODY_DOC,
              responses={code: {"model": ErrorOut} for code in (400, 411, 413, 415, 422)})
    async def api_predict(request: Request) -> dict[str, Any]:
        """Classify one handwritten digit (PNG or JPEG, any size up to 2 MiB)."""
        data = await _upload_bytes(request)
        return await gate.run(data, _predict_payload, predictor)

    # The lab (/lab, /report, /api/lab/...): its own module; it lists the served run too.
    app.include_router(lab_router(served=predictor.name, gate=gate))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
