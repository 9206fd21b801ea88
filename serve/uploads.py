"""Turning a request into uploads: a raw ``image/*`` body, or ``multipart/form-data`` with ``image`` fields."""
from __future__ import annotations

from http import HTTPStatus

from starlette.datastructures import UploadFile
from starlette.requests import Request

from hashtag.runtime.contract import RAW_UPLOAD_NAME, UPLOAD_FIELD as FIELD, upload_name
from hashtag.serve.errors import ApiError
from hashtag.serve.tagging import Upload

MULTIPART = "multipart/form-data"


def media_type(request: Request) -> str:
    """The Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The request's images in upload order; a raw body is named RAW_UPLOAD_NAME, parts by their file name."""
    media = media_type(request)
    if media == MULTIPART:
        return await _multipart(request, max_images)
    if not media.startswith("image/"):
        raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                       f"unsupported content type {media or '(none)'}: send image/* or {MULTIPART}")
    body = await request.body()
    if not body:
        raise ApiError(HTTPStatus.BAD_REQUEST, "empty body: send the image as the request body")
    return [Upload(RAW_UPLOAD_NAME, body)]


async def _multipart(request: Request, max_images: int) -> list[Upload]:
    async with request.form(max_files=max_images, max_fields=max_images) as form:
        parts = form.getlist(FIELD)
        if not parts:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"the multipart upload has no {FIELD!r} field")
        uploads = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"the {FIELD!r} field must be a file, not text")
            uploads.append(Upload(part.filename or upload_name(i), await part.read()))
        return uploads
