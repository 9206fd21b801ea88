"""The FastAPI app: the ``/v1`` API, health checks and the page; the same app runs alone or on Ray Serve."""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashtag.runtime.contract import MODELS_PATH, STATUS_MEANINGS, TAGS_PATH
from hashtag.runtime.errors import ModelSelectionError
from hashtag.runtime.options import parse_model_names
from hashtag.runtime.prediction import Options, refuse_fast_with_names
from hashtag.serve.auth import bearer, check_key
from hashtag.serve.backend import Backend
from hashtag.serve.config import ServeConfig
from hashtag.serve.errors import ApiError, error_response
from hashtag.serve.limits import BodyLimit
from hashtag.serve.tagging import probe_upload
from hashtag.serve.uploads import FIELD, MULTIPART, read_uploads

log = logging.getLogger("hashtag.serve")
STATIC = Path(__file__).resolve().parent / "static"
READY_TIMEOUT_S = 10.0


class ModelRecord(BaseModel):
    """One model's part of a prediction record (hashtag.runtime.contract.MODEL_RECORD_FIELDS)."""

    hashtags: list[str]
    scores: dict[str, float]


class TagRecord(BaseModel):
    """hashtag.runtime.contract's record: a prediction (``error`` null), or only ``image`` and ``error``."""

    image: str
    hashtags: list[str] | None = None
    scores: dict[str, float] | None = None
    models: dict[str, ModelRecord] | None = None
    error: str | None


class TagsAnswer(BaseModel):
    """What ``POST /v1/tags`` answers: one record per image, in upload order."""

    results: list[TagRecord]


class HealthAnswer(BaseModel):
    """What ``GET /healthz`` answers: alive, and the requests being tagged (a load balancer's view of the load)."""

    status: str
    in_flight: int


class ErrorAnswer(BaseModel):
    """What every refusal answers, with the status of ``STATUS_MEANINGS``."""

    error: str


UPLOAD_BODY = {
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        MULTIPART: {"schema": {"type": "object", "required": [FIELD], "properties": {
            FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    int(status): {"model": ErrorAnswer, "description": meaning} for status, meaning in STATUS_MEANINGS.items()
}


def _package_version() -> str:
    try:
        return version("hashtag")
    except PackageNotFoundError:
        return "0"


def _validation_message(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure answers ``{"error": ...}``: user mistakes with their 4xx, anything else a plain 500."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.headers)

    @app.exception_handler(ModelSelectionError)
    async def selection_error(_: Request, exc: ModelSelectionError) -> JSONResponse:
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


def create_app(config: ServeConfig, backend: Backend) -> FastAPI:
    """The app for ``config`` on ``backend``; closing the app (lifespan end) closes the backend."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = FastAPI(title="hashtag", version=_package_version(), lifespan=lifespan,
                  description="Hashtag suggestions for photos from an ensemble of ONNX image taggers.",
                  docs_url=None, redoc_url=None)  # Swagger UI and ReDoc load from a CDN: off, the schema stays
    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes)
    _add_error_handlers(app)

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        check_key(config.api_key, credentials)

    async def run(uploads: list, options: Options, timeout_s: float) -> list[dict[str, Any]]:
        try:
            return await asyncio.wait_for(backend.tag(uploads, options), timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"not answered within {timeout_s:g} s; try again later",
                           {"Retry-After": "5"}) from None

    @app.post(TAGS_PATH, response_model=TagsAnswer, response_model_exclude_unset=True, responses=ERRORS,
              dependencies=[Depends(authorized)], openapi_extra={"requestBody": UPLOAD_BODY})
    async def tags(
        request: Request,
        threshold: float | None = Query(None, ge=0.0, le=1.0, description="One threshold for every tag."),
        top_k: int | None = Query(None, ge=1, description="At most this many hashtags per image."),
        models: str | None = Query(None, description="Comma-separated model names (default: the ensemble)."),
        fast: bool = Query(False, description="Run the fast model alone (distilled from the ensemble)."),
    ) -> TagsAnswer:
        """Hashtags for one raw ``image/*`` body or the ``image`` files of a multipart form, in upload order.

        An image that cannot be read gets ``{"image", "error"}`` among the others; 400 when none can be read.
        """
        catalog = await backend.catalog()
        names = parse_model_names(models)
        refuse_fast_with_names(fast, names)
        if fast and catalog["fast"] is None:
            raise ModelSelectionError("this server runs no fast model")
        options = Options((catalog["fast"],) if fast else names, threshold, top_k)
        options.chosen(catalog["served"])
        uploads = await read_uploads(request, config.max_images)
        results = await run(uploads, options, config.timeout_s)
        failed = [r for r in results if r.get("error")]
        if len(failed) == len(results):
            raise ApiError(HTTPStatus.BAD_REQUEST, "; ".join(f"{r['image']}: {r['error']}" for r in failed))
        return TagsAnswer.model_validate({"results": results})

    @app.get(MODELS_PATH, dependencies=[Depends(authorized)], responses=ERRORS)
    async def models_info() -> dict[str, Any]:
        """The bundle's models, files, tags and thresholds, which of them this server runs, and providers."""
        return await backend.catalog()

    @app.get("/healthz")
    async def healthz() -> HealthAnswer:
        """The process is alive (answers while inference is busy), and how many requests are being tagged."""
        return HealthAnswer(status="ok", in_flight=backend.in_flight)

    @app.get("/readyz", responses={503: {"model": ErrorAnswer}})
    async def readyz() -> dict[str, str]:
        """The models are loaded and answer: a small image goes through the whole path."""
        try:
            served = tuple((await backend.catalog())["served"])  # every loaded model, the fast one too
            (record,) = await run([probe_upload()], Options(models=served), min(config.timeout_s, READY_TIMEOUT_S))
        except ApiError as exc:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {exc}") from None
        if record.get("error"):
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {record['error']}")
        return {"status": "ready"}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
