"""FastAPI app factory: the model is loaded once in `lifespan`; routes are thin.

Routes: `/` (the page), `/static/*`, `POST /api/predict`, `GET /api/health`,
`GET /api/model`, `GET /api/samples`, and the OpenAPI docs at `/docs`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from fashion_cnn.images import ImageError
from fashion_cnn.serve.service import ClassifierService, Limits, png_data_uri

log = logging.getLogger(__name__)
STATIC = resources.files("fashion_cnn.serve") / "static"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


#: How to send images, for the messages about a missing or malformed `files` field.
FILES_HINT = "send one or more images as the multipart/form-data field `files`"


def validation_message(errors: list[dict]) -> str:
    """FastAPI's (pydantic's) validation errors -> one message naming the parameter.

    E.g. "Invalid value for `top_k`: Input should be less than or equal to 10".
    """
    if not errors:
        return "Invalid request"
    error = errors[0]
    where = [p for p in error.get("loc", ()) if isinstance(p, str)]
    name = where[-1] if len(where) > 1 else "request"  # loc: ("query", "top_k"), ...
    hint = f" ({FILES_HINT})" if name == "files" else ""
    if error.get("type") == "missing":
        return f"Missing `{name}`{hint}"
    if name == "files":  # pydantic's text here: "Expected UploadFile, received: <class 'str'>"
        return f"Invalid value for `files`: expected files, received a text field{hint}"
    return f"Invalid value for `{name}`: {error.get('msg', 'bad input')}{hint}"


class RequestSizeLimit:
    """Pure ASGI middleware that refuses a request body over `max_bytes` with a JSON 413:
    at once when its Content-Length says so, or as soon as a body sent without one
    (chunked) grows past the limit, before the rest of it is read.

    (A pure ASGI middleware, not `@app.middleware("http")`, whose per-request task and
    streaming wrapper cost more than the classification of a small image.)
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> HTTPException:
        return HTTPException(
            413,
            f"Request of {size} bytes is larger than the {self.max_bytes} accepted; "
            f"send fewer or smaller files",
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            error = self._too_large(int(length))
            await _error(error.status_code, error.detail)(scope, receive, send)
            return
        received = 0

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while it reads the body on to
                    # the exception handlers (anything else would become a 400).
                    raise self._too_large(f"more than {self.max_bytes}")
            return message

        await self.app(scope, counting_receive, send)


def _status_of(error: ImageError) -> int:
    text = str(error)
    if "megapixels" in text:  # refused before decoding
        return 413
    if "not an image" in text or "animated" in text:
        return 415
    return 422


def _samples(n_per_class: int = 1) -> list[dict]:
    """One test image per class, if the dataset is installed (no download)."""
    from PIL import Image

    from fashion_cnn.data import CLASS_NAMES, DataError, load_data

    try:
        data = load_data(download=False, train=False)
    except DataError:
        return []
    out = []
    for c, name in enumerate(CLASS_NAMES):
        for i in [int(j) for j in (data.y_test == c).nonzero()[0][:n_per_class]]:
            image = Image.fromarray(data.x_test[i, ..., 0])
            out.append({"label": name, "index": i, "image": png_data_uri(image)})
    return out


def _classify_all(
    service: ClassifierService,
    uploads: list[tuple[str, bytes]],
    limits: Limits,
    top_k: int,
    explain: bool,
) -> list[dict]:
    results = []
    for name, data in uploads:
        if len(data) > limits.max_file_bytes:
            results.append(
                {
                    "file": name,
                    "status": 413,
                    "error": f"{name}: larger than {limits.max_file_bytes} bytes",
                }
            )
        elif not data:
            results.append({"file": name, "status": 422, "error": f"{name}: empty file"})
        else:
            try:
                results.append(service.classify(data, name, k=top_k, explain=explain))
            except ImageError as e:
                results.append({"file": name, "status": _status_of(e), "error": str(e)})
    return results


def create_app(
    run_dir: str | os.PathLike,
    limits: Limits | None = None,
    threshold: float | None = None,
    engine: str | None = None,
    service: ClassifierService | None = None,
) -> FastAPI:
    """Builds the app for one run folder.

    Args:
        run_dir: a finished run folder (its model is loaded at start-up, once).
        limits: upload limits (defaults: 10 MB a file, 40 MB a request, 16 files, 50 MP).
        threshold: confidence below which the answer is "unsure" (default: the run's).
        engine: inference engine (default: the fastest float engine the run has).
        service: the run's service, already loaded (then `threshold` and `engine` are
            its own): the CLI loads it before the server starts, so that a damaged run
            is reported as an error rather than as a failed server start-up.
    """
    limits = limits or Limits()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = service or ClassifierService(
            run_dir, threshold=threshold, engine=engine
        )
        app.state.samples = _samples()
        log.info(
            "model from %s loaded (%s engine), warmed up", run_dir, app.state.service.engine.name
        )
        yield

    app = FastAPI(
        title="fashion-cnn",
        description="Classify clothing photos with a Keras CNN trained on Fashion-MNIST.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # 404, 405, 413...
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):  # never a bare 500 page
        log.exception("unexpected error")
        return _error(500, f"Internal error ({type(exc).__name__}); the server keeps running")

    app.add_middleware(RequestSizeLimit, max_bytes=limits.max_request_bytes)

    @app.get("/", include_in_schema=False)
    async def index(request: Request):
        request.app.state.service.load_model_in_background()  # the page asks for Grad-CAM
        return FileResponse(Path(str(STATIC / "index.html")))

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/health")
    async def health(request: Request):
        return {"status": "ok", "model_loaded": hasattr(request.app.state, "service")}

    @app.get("/api/model")
    def model_card(request: Request):  # a thread: for an old export it may load Keras (~8 s)
        return request.app.state.service.card()

    @app.get("/api/samples")
    async def samples(request: Request):
        return request.app.state.samples

    @app.post("/api/predict")
    async def predict(
        request: Request,
        files: Annotated[list[UploadFile], File(description="one or more image files")],
        top_k: Annotated[int, Query(ge=1, le=10)] = 3,
        explain: Annotated[bool, Query(description="add a Grad-CAM overlay")] = False,
    ):
        """Classifies each uploaded file; a bad file gets its own error and status."""
        service: ClassifierService = request.app.state.service
        if len(files) > limits.max_files:
            return _error(413, f"{len(files)} files sent, at most {limits.max_files} accepted")
        uploads = []
        for upload in files:
            uploads.append(
                (upload.filename or "upload", await upload.read(limits.max_file_bytes + 1))
            )
        # A plain classification takes ~1 ms of CPU: done inline, it costs less than a hop
        # to the thread pool. Grad-CAM takes tens of ms, so it goes to a thread.
        work = functools.partial(_classify_all, service, uploads, limits, top_k, explain)
        results = await run_in_threadpool(work) if explain else work()
        if all("error" in r for r in results):
            first = results[0]
            return JSONResponse({"error": first["error"], "results": results}, first["status"])
        # Plain JSON types already: skip FastAPI's jsonable_encoder pass over them.
        return JSONResponse({"results": results})

    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` with several workers: the run folder comes from
    FASHION_CNN_RUN, the engine from FASHION_CNN_ENGINE (optional)."""
    run = os.environ.get("FASHION_CNN_RUN")
    if not run:
        raise RuntimeError("FASHION_CNN_RUN is not set: start the server with `fashion-cnn serve`")
    return create_app(run, engine=os.environ.get("FASHION_CNN_ENGINE") or None)
