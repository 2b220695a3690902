"""The HTTP API (FastAPI, served by uvicorn): ``create_app(engine, settings)``.

- ``POST /v1/predict``: an image or a video, as the raw request body or as the ``file`` field
  of a multipart form. An image gets ``{"faces": [face records]}``; with ``?annotate=1`` the
  picture with each face's box, emotion and probability drawn on it (JPEG). A video gets one
  JSON line per frame, ``{"frame", "time_s", "faces"}``. ``?boxes=[[x1,y1,x2,y2],...]`` gives
  the faces (pixels; for a video, the same boxes in every frame) and skips detection.
- ``GET /health``, ``GET /v1/info`` (model, classes, backend, version, batching, limits),
  ``GET /v1/stats`` (seconds spent per stage, forward passes and their sizes), ``GET /``: a page
  to drop a photo on.

Decoding and detection run in a thread pool (OpenCV releases the GIL); the faces go to the
``DynamicBatcher``'s model thread. Errors are JSON ``{"error", "limit", "value"}`` (``limits``).
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

import cv2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from glamor_fast.predict.annotate import draw_faces

from .batcher import DynamicBatcher
from .engine import Engine
from .limits import ApiError, Limits, exceeded
from .params import check_boxes_inside, parse_boxes, parse_flag
from .uploads import VideoUpload, decode_image, upload_kind

STAGES = ("read", "decode", "detect", "prepare", "model_wait", "encode")
FRAMES_IN_FLIGHT = 4   # video frames of one request queued for the model at once


@dataclass
class ServeSettings:
    """Batching (``max_batch`` faces per forward pass, 1 = off; ``max_wait_ms``; ``model_workers``
    threads running forward passes), the detection pool's size, the limits, and where video uploads
    are decoded from (None: the system's temp folder)."""
    max_batch: int = 16
    max_wait_ms: float = 5.0
    model_workers: int = 1
    detect_workers: int = 2
    limits: Limits = field(default_factory=Limits)
    tmp_dir: str | None = None
    jpeg_quality: int = 90


class _Clock:
    """Seconds per stage summed over requests (``GET /v1/stats``)."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.requests: dict[str, int] = {}

    def count(self, status: int) -> None:
        self.requests[str(status)] = self.requests.get(str(status), 0) + 1

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


def create_app(engine: Engine, settings: ServeSettings) -> FastAPI:
    limits = settings.limits
    clock = _Clock()
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        state["pool"] = ThreadPoolExecutor(settings.detect_workers, thread_name_prefix="glamor-serve detect")
        state["batcher"] = DynamicBatcher(engine.recognize, settings.max_batch, settings.max_wait_ms,
                                            settings.model_workers)
        try:
            yield
        finally:
            state["batcher"].close()
            state["pool"].shutdown(wait=True)

    app = FastAPI(title="glamor_fast emotion recognition", lifespan=lifespan, docs_url=None, redoc_url=None)
    page = resources.files("glamor_fast.serve").joinpath("page/index.html").read_text(encoding="utf-8")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/info")
    async def info():
        from glamor_fast import __version__

        return {"name": "glamor_fast", "version": __version__, "model": engine.info(),
                "classes": engine.classes, "server": "fastapi+uvicorn",
                "batching": {"max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms,
                             "enabled": settings.max_batch > 1, "model_workers": settings.model_workers},
                "detect_workers": settings.detect_workers, "limits": limits.as_dict()}

    @app.get("/v1/stats")
    async def stats():
        return {"stages_s": {k: round(v, 6) for k, v in clock.seconds.items()},
                "model": state["batcher"].stats.as_dict(), "responses": dict(clock.requests)}

    @app.post("/v1/predict")
    async def predict(request: Request):
        status = 500
        try:
            response = await asyncio.wait_for(_predict(request), timeout=limits.max_request_seconds)
            status = response.status_code
            return response
        except TimeoutError:
            status = 408
            raise exceeded(408, limits, "max_request_seconds", "the request took too long") from None
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            clock.count(status)

    async def _predict(request: Request) -> Response:
        t = time.perf_counter()
        kind = upload_kind(request.headers.get("content-type"))
        annotate = parse_flag(request.query_params.get("annotate"), "annotate")
        boxes = parse_boxes(request.query_params.get("boxes"), limits)
        data = await _read_body(request, limits)
        if kind == "multipart":
            data, kind = await _form_file(request, data)
        if not data:
            raise ApiError(400, "the upload is empty")
        t = clock.add("read", t)
        loop, pool, batcher = asyncio.get_running_loop(), state["pool"], state["batcher"]
        batcher.request_opened()
        try:
            image = None
            if kind in ("image", "any"):
                image = await loop.run_in_executor(pool, decode_image, data, limits)
                if image is None and kind == "image":
                    raise ApiError(400, "the upload cannot be decoded as an image (corrupt, truncated or "
                                        "an unknown format)")
            if image is None:
                if annotate:
                    raise ApiError(400, "annotate=1 is for images; a video gets JSON lines")
                return await _video(data, boxes, loop, pool, batcher, clock.add("decode", t))
            t = clock.add("decode", t)
            if boxes is not None:
                check_boxes_inside(boxes, image.shape[1], image.shape[0])
                faces = [(b, None) for b in boxes]
            else:
                faces = await loop.run_in_executor(pool, engine.detect, image)
                t = clock.add("detect", t)
            inputs = await loop.run_in_executor(pool, engine.prepare, image, faces)
            t = clock.add("prepare", t)
            records = await asyncio.wrap_future(batcher.submit(inputs, faces))
            t = clock.add("model_wait", t)
        finally:
            batcher.request_closed()
        if not annotate:
            return JSONResponse({"faces": records})
        jpeg = await loop.run_in_executor(pool, _annotated_jpeg, image, records, settings.jpeg_quality)
        clock.add("encode", t)
        return Response(jpeg, media_type="image/jpeg")

    async def _video(data, boxes, loop, pool, batcher, t) -> Response:
        video = await loop.run_in_executor(pool, VideoUpload, data, limits, settings.tmp_dir)
        t = clock.add("decode", t)
        if boxes is not None:
            check_boxes_inside(boxes, video.width, video.height)
        lines, pending = [], deque()

        def next_frame():
            frame = video.read()
            if frame is None:
                return None, None, []
            faces = [(b, None) for b in boxes] if boxes is not None else engine.detect(frame, video=True)
            return frame, engine.prepare(frame, faces), faces

        async def finish_one():
            index, future = pending.popleft()
            faces = await asyncio.wrap_future(future)
            lines.append(json.dumps({"frame": index, "time_s": round(index / video.fps, 6), "faces": faces}))

        try:
            while True:
                frame, inputs, faces = await loop.run_in_executor(pool, next_frame)
                t = clock.add("detect" if boxes is None else "decode", t)
                if frame is None:
                    break
                pending.append((video.index - 1, batcher.submit(inputs, faces)))
                if len(pending) >= FRAMES_IN_FLIGHT:
                    await finish_one()
                    t = clock.add("model_wait", t)
            while pending:
                await finish_one()
            clock.add("model_wait", t)
        finally:
            for _, future in pending:
                future.cancel()
            await loop.run_in_executor(None, video.close)
        return Response("\n".join(lines) + "\n", media_type="application/x-ndjson")

    return app


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``max_upload_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise exceeded(413, limits, "max_upload_bytes", f"the upload ({declared} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_upload_bytes:
            raise exceeded(413, limits, "max_upload_bytes", "the upload")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form_file(request: Request, body: bytes) -> tuple[bytes, str]:
    """The ``file`` field of a multipart body (already read and size-checked) and its kind."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def replay():
        yield body
        yield b""

    try:
        form = await MultiPartParser(request.headers, replay(), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise ApiError(400, f"multipart form: {exc.message}") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "multipart form: no file field named 'file'")
    kind = upload_kind(upload.content_type)
    if kind == "multipart":
        raise ApiError(415, "multipart form: the file field is itself multipart")
    data = await upload.read()
    await upload.close()
    return data, kind


def _annotated_jpeg(image, records: list, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(draw_faces(image, records), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the annotated image as JPEG")
    return buf.tobytes()
