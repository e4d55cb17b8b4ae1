"""ASGI wrapper for the metered API: refuse oversized bodies before they are read.

Django's ASGI handler reads a whole request body (to memory, then disk) before any view runs, so a view can only
refuse a large body after receiving it. For /v1/ paths this wrapper answers 413 in OpenAI's error shape as soon
as the declared Content-Length, or the bytes received so far, pass GATEWAY_MAX_BODY_BYTES.
"""

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"The request body is larger than {limit} bytes.",
                "type": "invalid_request_error",
                "param": None,
                "code": "request_too_large",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def gateway_asgi(app: ASGIApp) -> ASGIApp:
    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await app(scope, receive, send)
            return
        limit = settings.GATEWAY_MAX_BODY_BYTES
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _too_large(send, limit)
                    return
                break
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    # Django stops reading at a disconnect and sends nothing; the 413 is sent below.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await app(scope, limited_receive, send)
        if refused:
            await _too_large(send, limit)

    return application
