"""Request bodies bounded before anything parses them (docs/design-security.md, "Sizes").

A pure ASGI middleware: a ``Content-Length`` past the bound is answered 413 unread; a
body without one (chunked) is counted as it arrives and refused when it passes the bound.
JSON bodies get :data:`JSON_BYTES`; a multipart form (a certificate, a spreadsheet, a
label's photo) :data:`UPLOAD_BYTES`, above the largest file a route keeps.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_BYTES = 64 * 1024
UPLOAD_BYTES = 12 * 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: an HTTPException, so that the routes' own body parsing
    lets it through as the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, json_bytes: int = JSON_BYTES, upload_bytes: int = UPLOAD_BYTES
    ) -> None:
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes

    def limit_for(self, headers: Headers) -> int:
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return self.upload_bytes if kind == "multipart/form-data" else self.json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limit_for(headers)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(scope, receive, send, BodyTooLarge(limit))
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:  # raised where no handler turned it into a response
            if started:
                raise
            await _refuse(scope, receive, send, exc)


async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BodyTooLarge) -> None:
    response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    response.headers["Connection"] = "close"  # the rest of the body is not read
    await response(scope, receive, send)
