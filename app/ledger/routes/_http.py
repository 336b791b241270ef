"""Small helpers shared by the route modules: JSON in, JSON out."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ledger.errors import ApiError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 64 * 1024

ModelT = TypeVar("ModelT", bound=BaseModel)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            return content.__pydantic_serializer__.to_json(content)
        return orjson.dumps(content)


def _too_large() -> PayloadTooLarge:
    # `connection: close`: the rest of the body is never read, so the connection cannot be reused.
    return PayloadTooLarge(
        f"request body is larger than {MAX_BODY_BYTES} bytes", headers={"Connection": "close"}
    )


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read chunk by chunk and abandoned (413) as soon as it passes `limit`.

    Chunked bodies have no Content-Length to check up front: reading stops at the limit,
    so memory stays bounded whatever the client sends.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large()
    return bytes(body)


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the JSON body against `model`, or raise a 422 naming each bad field.

    A Content-Type other than JSON is refused with 415 before the body is read.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    body = await read_body(request)
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidRequest(summary, details=problems) from None


def parse_uuid(value: str, not_found: type[ApiError], what: str) -> uuid.UUID:
    """A path id; an id that is not a UUID cannot exist, so it is a 404."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(f"{what} {value!r} does not exist") from None
