"""The lab: compare models as you draw, look inside the CNN, browse the runs and the report.

    app.include_router(lab_router(served=run_dir))     # what create_app does

Pages: ``GET /lab`` (static/lab.html; views #compare, #inside, #runs), ``GET /report`` (the
report's report.html and its files, when ``mnistlab report`` has written one). JSON API, each
view's data (see /docs): ``GET /api/lab/runs``, ``/api/lab/runs/{id}``, ``.../history``,
``.../confusion``, ``.../curves.png``, ``.../confusion.png``; ``POST /api/lab/compare`` and
``POST /api/lab/inside`` (body: a PNG or JPEG, as for /api/predict); ``GET
/api/lab/fc-template/{id}``; ``GET /api/lab/sample`` (an MNIST test digit as a PNG to try).

Runs are looked for under ``paths.run_roots()`` on every listing (cached for a second), so a run
that starts training while the server is up appears, and its curve grows (the page polls
``.../history``). Models are loaded once per weights file (reloaded when an epoch rewrites it).
Errors are 4xx JSON ``{"error": code, "detail": text}``, as on /api/predict.
"""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from torch import nn

from mnistlab import runs
from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.inference.ensemble import EnsembleModule, EnsemblePredictor, read_ensemble
from mnistlab.inference.preprocess import Preprocessed, preprocess
from mnistlab.paths import report_dir
from mnistlab.perf.synth import encode, render_mnist
from mnistlab.report import plots
from mnistlab.serve import catalog, explain
from mnistlab.serve import lab_schema as schema
from mnistlab.serve.catalog import RunInfo
from mnistlab.serve.decoding import (
    MAX_DECODED_PIXELS,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_PIXELS,
    DecodeGate,
    refusal,
)

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = MAX_UPLOAD_BYTES       # as /api/predict: a phone JPEG fits, a flood does not
IMAGE_TYPES = {"image/png", "image/jpeg", "application/octet-stream"}
CATALOG_TTL_S = 1.0                     # the page asks on every stroke; the disk need not answer
MODEL_CACHE = 8                         # loaded models kept (the seed CNN is 1.7 MB)
MAX_MODELS = 6                          # per compare request: a drawing is one forward each
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schema.LabErrorOut} for code in (400, 404, 409, 413, 415, 422)}
_IMAGE_BODY = {"requestBody": {"required": True, "description": "a PNG or JPEG (at most 2 MiB)",
                               "content": {t: {"schema": {"type": "string", "format": "binary"}}
                                           for t in ("image/png", "image/jpeg")}}}


class LabError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class LabRoute(APIRoute):
    """Turns LabError and bad parameters into the app's 4xx JSON shape, route by route (a
    router cannot install exception handlers on the app it is included in)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LabError as exc:
                return JSONResponse({"error": exc.code, "detail": exc.detail},
                                    status_code=exc.status)
            except RequestValidationError as exc:
                where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: "
                                  f"{e.get('msg', '')}" for e in exc.errors())
                return JSONResponse({"error": "bad_request", "detail": where}, status_code=422)

        return guarded


class ModelCache:
    """Loaded models by run, reloaded when the weights file changes; least recently used out."""

    def __init__(self, size: int = MODEL_CACHE) -> None:
        self.size = size
        self._models: OrderedDict[tuple[Path, int], nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, info: RunInfo) -> nn.Module:
        key = (info.path, catalog.weights_stamp(info))
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        try:
            model = (EnsembleModule(EnsemblePredictor(info.path)) if info.family == "ensemble"
                     else runs.load_model(info.path)).eval()
        except UserError as exc:
            raise LabError(409, "unusable_run", str(exc)) from None
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


async def _image_body(request: Request) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in IMAGE_TYPES:
        raise LabError(415, "unsupported_type", f"content type {ctype or '(none)'!r} is not "
                       "accepted; send the PNG or JPEG itself as the body (image/png)")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise LabError(413, "too_large", f"the body is {int(length):,} bytes; the limit is "
                       f"{MAX_BODY_BYTES:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise LabError(413, "too_large", f"the body is larger than {MAX_BODY_BYTES:,} bytes")
        chunks.append(chunk)
    if not size:
        raise LabError(400, "empty_body", "the request holds no image; send a PNG or JPEG")
    return b"".join(chunks)


def _preprocess(data: bytes) -> Preprocessed:
    """As /api/predict decodes a picture: the same limits, the same refusals."""
    try:
        return preprocess(data, max_pixels=MAX_UPLOAD_PIXELS,
                          max_decoded_pixels=MAX_DECODED_PIXELS)
    except UserError as exc:
        raise LabError(*refusal(exc), str(exc)) from None


def _grid(a: np.ndarray, digits: int = 4) -> list[list[float]]:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _answer(info: RunInfo, probs: np.ndarray) -> schema.ModelAnswer:
    digit = int(np.argmax(probs))
    return schema.ModelAnswer(id=info.id, model=info.model, family=info.family, digit=digit,
                              probability=float(probs[digit]),
                              probabilities=[float(p) for p in probs])


def _template(info: RunInfo, model: nn.Module, digit: int) -> schema.TemplateOut:
    try:
        t = explain.fc_template(model, digit)
    except explain.NotExplainable as exc:
        raise LabError(422, "not_an_fc", f"run {info.id}: {exc}") from None
    return schema.TemplateOut(
        id=info.id, digit=digit, values=_grid(t), scale=float(np.abs(t).max()),
        description="product of the Linear weights for this digit (W2[c] @ W1 for the seed "
                    "FC); ReLU and biases left out")


SALIENCY = {
    "occlusion": f"drop in the answer's probability when a {explain.OCCLUSION_PATCH}x"
                 f"{explain.OCCLUSION_PATCH} px square around the pixel is blanked (averaged "
                 f"over squares at stride {explain.OCCLUSION_STRIDE}); positive: the ink there "
                 "argued for the answer",
    "gradient": "|d logit / d pixel| of the answer's logit at this drawing, scaled to max 1",
}


def lab_router(served: str | Path | None = None, gate: DecodeGate | None = None
               ) -> APIRouter:
    """The lab's pages and API. ``served``: the app's own run folder, listed even when it lies
    outside the run roots; ``gate``: how many pictures are decoded at once, shared with the
    app's other routes (``serve.decoding``)."""
    extra = [Path(served)] if served is not None and Path(served).is_dir() else []
    own = extra[0] if extra else None                   # the compare view starts with it
    router = APIRouter(route_class=LabRoute)
    gate = gate or DecodeGate()          # create_app shares its own with /api/predict
    models = ModelCache()
    confusions: dict[tuple[Path, int], schema.ConfusionOut] = {}
    listing: dict[str, Any] = {"at": -1e9, "runs": []}
    listing_lock = threading.Lock()

    def all_runs() -> list[RunInfo]:
        with listing_lock:
            if time.monotonic() - listing["at"] > CATALOG_TTL_S:
                listing["runs"] = catalog.find_runs(extra=extra)
                listing["at"] = time.monotonic()
            return listing["runs"]

    def find(run_id: str) -> RunInfo:
        try:
            return catalog.by_id(all_runs(), run_id)
        except KeyError:
            known = ", ".join(r.id for r in all_runs()[:8]) or "none found"
            raise LabError(404, "unknown_run", f"no run {run_id!r}; known: {known}") from None

    def usable(info: RunInfo) -> RunInfo:
        # an ensemble's members are checked as it loads (ModelCache: 409 naming the member)
        if info.family != "ensemble" and not (info.path / runs.WEIGHTS).is_file():
            raise LabError(409, "no_weights", f"run {info.id} has no weights yet (its first "
                           "epoch has not finished)")
        return info

    def run_out(info: RunInfo) -> schema.RunOut:
        return schema.RunOut(**info.to_json())

    def history_out(info: RunInfo) -> schema.HistoryOut:
        fresh = catalog.read_run(info.path, info.id, info.root) or info
        return schema.HistoryOut(id=info.id, status=fresh.status, epochs_done=fresh.epochs_done,
                                 epochs_planned=fresh.epochs_planned,
                                 rows=catalog.history(fresh))

    # --- pages ---------------------------------------------------------------------------

    @router.get("/lab", include_in_schema=False)
    async def lab_page() -> FileResponse:
        return FileResponse(STATIC / "lab.html", media_type="text/html")

    @router.get("/report", include_in_schema=False)
    @router.get("/report/", include_in_schema=False)
    async def report_page() -> Response:
        return _report_file("report.html")

    @router.get("/report/{path:path}", include_in_schema=False)
    async def report_asset(path: str) -> Response:
        return _report_file(path)

    # --- runs ----------------------------------------------------------------------------

    @router.get("/api/lab/runs", response_model=schema.RunsOut, tags=["lab"])
    async def list_runs() -> schema.RunsOut:
        """Every run found under runs/ and report/runs (finished, training or stopped), newest
        first, and the ids the compare view starts with."""
        found = await run_in_threadpool(all_runs)
        return schema.RunsOut(runs=[run_out(r) for r in found],
                              defaults=[r.id for r in catalog.default_models(found, served=own)],
                              report=(report_dir() / "report.html").is_file())

    @router.get("/api/lab/runs/{run_id}", response_model=schema.RunDetailOut, tags=["lab"],
                responses=_ERRORS)
    async def run_detail(run_id: str) -> schema.RunDetailOut:
        """One run: its summary, its epochs so far and its training settings."""
        info = find(run_id)
        try:
            if info.family == "ensemble":
                return schema.RunDetailOut(run=run_out(info), history=history_out(info),
                                           train=_ensemble_settings(info.path))
            config = runs.read_config(info.path).to_dict()
        except UserError as exc:
            raise LabError(409, "unusable_run", str(exc)) from None
        train = config.get("train") if isinstance(config.get("train"), dict) else {}
        return schema.RunDetailOut(run=run_out(info), history=history_out(info), train=train)

    @router.get("/api/lab/runs/{run_id}/history", response_model=schema.HistoryOut,
                tags=["lab"], responses=_ERRORS)
    async def run_history(run_id: str) -> schema.HistoryOut:
        """The epochs so far: poll this while a run trains (history.json is rewritten,
        atomically, after every epoch)."""
        return history_out(find(run_id))

    def confusion(info: RunInfo) -> schema.ConfusionOut:
        key = (info.path, catalog.weights_stamp(info))
        if key not in confusions:
            try:
                images, labels = load_dataset(info.dataset, "test", download=False)
            except UserError as exc:
                raise LabError(409, "no_dataset", f"the {info.dataset} test set is not on this "
                               f"machine ({exc}); `mnistlab data fetch` gets it") from None
            cm = explain.confusion_on(models.get(info), images, labels)
            confusions[key] = schema.ConfusionOut(
                id=info.id, dataset=info.dataset, images=int(cm.sum()),
                accuracy=float(np.trace(cm) / max(1, cm.sum())), matrix=cm.tolist())
        return confusions[key]

    @router.get("/api/lab/runs/{run_id}/confusion", response_model=schema.ConfusionOut,
                tags=["lab"], responses=_ERRORS)
    async def run_confusion(run_id: str) -> schema.ConfusionOut:
        """The confusion matrix on the run's test set (computed once per weights file)."""
        info = usable(find(run_id))
        return await run_in_threadpool(confusion, info)

    @router.get("/api/lab/runs/{run_id}/curves.png", tags=["lab"], responses=_ERRORS,
                response_class=Response)
    async def run_curves_png(run_id: str) -> Response:
        """The learning curves as the report draws them (matplotlib, PNG)."""
        info = find(run_id)
        rows = catalog.history(info)
        if info.family == "ensemble":
            raise LabError(409, "no_history", f"{info.id} is an ensemble: its members have "
                           "learning curves, it has none of its own")
        if not rows:
            raise LabError(409, "no_history", f"run {info.id} has no finished epoch yet")
        curves = {k: np.array([[np.nan if r.get(k) is None else r[k] for r in rows]])
                  for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss")}
        png = await run_in_threadpool(_png, plots.learning_curves, {info.family: curves})
        return Response(png, media_type="image/png")

    @router.get("/api/lab/runs/{run_id}/confusion.png", tags=["lab"], responses=_ERRORS,
                response_class=Response)
    async def run_confusion_png(run_id: str) -> Response:
        """The confusion matrix as the report draws it (matplotlib, PNG)."""
        info = usable(find(run_id))
        cm = np.array((await run_in_threadpool(confusion, info)).matrix)
        png = await run_in_threadpool(_png, plots.confusion_matrices, {info.family: cm})
        return Response(png, media_type="image/png")

    # --- one drawing, several models -----------------------------------------------------

    def compare(data: bytes, ids: list[str]) -> schema.CompareOut:
        pre = _preprocess(data)
        answers, unusable, first_error = [], [], None
        for run_id in ids:
            info = find(run_id)                     # an unknown id: 404, the request was wrong
            try:
                model = models.get(usable(info))
            except LabError as exc:                 # the others still answer
                first_error = first_error or exc
                unusable.append(schema.UnusableOut(id=run_id, error=exc.code,
                                                   detail=exc.detail))
                continue
            answers.append((info, explain.probabilities(model, pre.image[None])[0]))
        if first_error is not None and not answers:
            raise first_error
        d = explain.disagreement([p for _, p in answers])
        return schema.CompareOut(
            models=[_answer(info, p) for info, p in answers], unusable=unusable,
            disagreement=schema.DisagreementOut(**d.__dict__),
            image_28=_grid(pre.image), notes=pre.notes)

    @router.post("/api/lab/compare", response_model=schema.CompareOut, tags=["lab"],
                 responses=_ERRORS, openapi_extra=_IMAGE_BODY)
    async def api_compare(request: Request, models: list[str] | None = Query(  # noqa: B008
            None, description="run ids (repeat the parameter); default: the default picks")
    ) -> schema.CompareOut:
        """Every chosen model's ten probabilities for one drawing, and how far they disagree."""
        ids = models or [r.id for r in catalog.default_models(all_runs(), served=own)]
        if not ids:
            raise LabError(404, "no_runs", "no finished run found; train one first, e.g. "
                           "`mnistlab train fc`")
        if len(ids) > MAX_MODELS or len(set(ids)) != len(ids):
            raise LabError(400, "bad_models", f"give 1 to {MAX_MODELS} different run ids")
        data = await _image_body(request)
        return await gate.run(data, compare, ids)

    def inside(data: bytes, cnn_id: str | None, fc_id: str | None, method: str,
               top: int | None) -> schema.InsideOut:
        pre = _preprocess(data)
        picks = catalog.default_models(all_runs(), served=own)
        cnn_info = usable(find(cnn_id) if cnn_id else next(
            (r for r in picks if r.family == "cnn"), None) or _none("cnn"))
        if cnn_info.family != "cnn":
            what = "an ensemble" if cnn_info.family == "ensemble" else "an FC model"
            raise LabError(422, "not_a_cnn", f"run {cnn_info.id} is {what}: it has no "
                           "feature maps of its own; pick a CNN")
        cnn = models.get(cnn_info)
        p = explain.probabilities(cnn, pre.image[None])[0]
        answer = _answer(cnn_info, p)
        try:
            blocks = explain.feature_maps(cnn, pre.image)
        except explain.NotExplainable as exc:
            raise LabError(422, "not_a_cnn", f"run {cnn_info.id}: {exc}") from None
        if method == "occlusion":
            sal = explain.occlusion_saliency(cnn, pre.image, answer.digit)
        else:
            sal = explain.gradient_saliency(cnn, pre.image, answer.digit)
        fc_info = find(fc_id) if fc_id else next((r for r in picks if r.family == "fc"), None)
        fc_answer = template = None
        if fc_info is not None:
            fc = models.get(usable(fc_info))
            fc_answer = _answer(fc_info, explain.probabilities(fc, pre.image[None])[0])
            template = _template(fc_info, fc, fc_answer.digit)
        return schema.InsideOut(
            cnn=answer, image_28=_grid(pre.image), fc=fc_answer, fc_template=template,
            saliency=schema.SaliencyOut(method=method, target=answer.digit,
                                        description=SALIENCY[method], values=_grid(sal)),
            blocks=[schema.BlockOut(
                index=b.index, channels=b.channels, height=b.height, width=b.width,
                maps=[schema.FeatureMapOut(channel=m.channel, mean=m.mean, peak=m.peak,
                                           values=_grid(m.values, 3))
                      for m in b.maps[:top]]) for b in blocks])

    @router.post("/api/lab/inside", response_model=schema.InsideOut, tags=["lab"],
                 responses=_ERRORS, openapi_extra=_IMAGE_BODY)
    async def api_inside(
        request: Request,
        cnn: str | None = Query(None, description="a CNN run id (default: the best CNN)"),
        fc: str | None = Query(None, description="an FC run id (default: the best FC)"),
        saliency: str = Query("occlusion", pattern="^(occlusion|gradient)$",
                              description="occlusion (default) or gradient"),
        top: int | None = Query(None, ge=1, le=1024,
                                description="keep the most active maps of each block"),
    ) -> schema.InsideOut:
        """Inside the CNN for one drawing: each conv block's feature maps (after ReLU and
        pooling, most active first), a saliency map, and the FC baseline's class template."""
        data = await _image_body(request)
        return await gate.run(data, inside, cnn, fc, saliency, top)

    @router.get("/api/lab/fc-template/{run_id}", response_model=schema.TemplateOut,
                tags=["lab"], responses=_ERRORS)
    async def api_fc_template(run_id: str, digit: int = Query(..., ge=0, le=9)
                              ) -> schema.TemplateOut:
        """An FC model's 28x28 template for one digit (W2[c] @ W1 for the seed FC)."""
        info = usable(find(run_id))
        return _template(info, await run_in_threadpool(models.get, info), digit)

    @router.get("/api/lab/sample", tags=["lab"], response_class=Response, responses=_ERRORS)
    async def api_sample(index: int = Query(0, ge=0, le=9999)) -> Response:
        """MNIST test digit ``index`` drawn large, dark on white (PNG): something to try the
        views with, without drawing."""
        try:
            images, _ = load_dataset("mnist", "test", download=False)
        except UserError as exc:
            raise LabError(409, "no_dataset", str(exc)) from None
        return Response(encode(render_mnist(images[index], scale=8, margin=24)),
                        media_type="image/png")

    return router


def _ensemble_settings(folder: Path) -> dict[str, Any]:
    """What a saved ensemble is made of, in the place of a run's training settings."""
    saved = read_ensemble(folder)
    return {"members": [Path(m.run_dir).name for m in saved.members],
            "weights": [m.weight for m in saved.members], "shifts": saved.shifts,
            "selection": saved.protocol.get("selection"), "test_images": saved.test_images}


def _none(family: str) -> RunInfo:
    raise LabError(404, "no_runs", f"no finished {family.upper()} run found; train one, e.g. "
                   f"`mnistlab train {family}`, or name one")


def _png(draw: Callable[[Any], Any], data: Any) -> bytes:
    buf = io.BytesIO()
    draw(data).savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _report_file(relative: str) -> Response:
    base = report_dir()
    target = (base / relative).resolve()
    if not target.is_relative_to(base.resolve()) or not target.is_file():
        what = "no report yet: `mnistlab report` writes one" if relative == "report.html" \
            else f"no file {relative!r} in the report"
        return JSONResponse({"error": "not_found", "detail": what}, status_code=404)
    return FileResponse(target)
