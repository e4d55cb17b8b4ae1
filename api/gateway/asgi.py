"""The ASGI entry of the metered API: /v1/ requests get a lean Django handler of their own.

- Size limit: Django's ASGI handler reads a whole request body (to memory, then disk) before any view runs, so a
  view can only refuse a large body after receiving it. For /v1/ this wrapper answers 413 in OpenAI's error
  shape as soon as the declared Content-Length, or the bytes received so far, pass GATEWAY_MAX_BODY_BYTES.
- A lean handler: the API is authenticated by API keys, so sessions, CSRF, cookie-based auth, messages, allauth
  and static files have nothing to do there. Only Django's SecurityMiddleware and CommonMiddleware checks run
  (HTTPS redirect and HSTS, allowed hosts), called in the event loop by GatewayMiddleware: as ordinary middleware
  each would hop to a thread and back twice per request (Django runs a sync-style middleware's hooks through
  sync_to_async), and the full stack's synchronous WhiteNoise would move the whole call to a thread. URLs are
  resolved against the /v1 routes alone (api.gateway.root_urls). Requests also skip the per-request thread that
  Django's handler creates for synchronous code, and the request signals' thread hops (GatewayHandler.handle):
  the few sync calls the gateway makes (cache misses, bulk work such as usage events) run on worker threads
  that close their database connections (core.orm.orm_call).
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpRequest, HttpResponseBase
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.test.utils import override_settings
from django.urls import set_script_prefix

from api.gateway.http import GatewayError

GATEWAY_MIDDLEWARE = ["api.gateway.asgi.GatewayMiddleware"]
security_logger = logging.getLogger("django.security.DisallowedHost")


class GatewayMiddleware:
    """SecurityMiddleware + CommonMiddleware for the metered API, run in the event loop.

    Their hooks do no I/O (headers, host and scheme checks), so calling them directly is safe and saves four
    thread round trips per request.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]]):
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.common = CommonMiddleware(get_response)
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request.urlconf = "api.gateway.root_urls"
        refused: HttpResponseBase | None
        try:
            refused = self.security.process_request(request) or self.common.process_request(request)
        except DisallowedHost as exc:
            # Django would answer its HTML 400 page; an API client gets the error in OpenAI's shape.
            security_logger.warning("%s", exc)
            refused = GatewayError(
                400,
                "The Host header names a host this server does not serve; call the API at its published address.",
                code="invalid_host",
            ).response()
        response = refused if refused is not None else await self.get_response(request)
        response = self.common.process_response(request, response)
        return self.security.process_response(request, response)  # type: ignore[arg-type]


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


class GatewayHandler(ASGIHandler):
    """Django's ASGI handler with the metered API's own middleware list, and no per-request sync thread."""

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler builds its chain from settings.MIDDLEWARE; this handler's chain comes from its own list.
        with override_settings(MIDDLEWARE=GATEWAY_MIDDLEWARE):
            super().load_middleware(is_async)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        await self.handle(scope, receive, send)  # type: ignore[arg-type]

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        """ASGIHandler.handle without the request_started signal, and the response closed in the event loop.
        Otherwise a copy of Django 5.2's (tests/api/gateway/test_asgi_handler.py fails when Django's changes).

        Django sends request_started, and closes the response (which sends request_finished), through
        sync_to_async: two hops to a thread and back on every call, about a fifth of the gateway's CPU per call. Their
        receivers look after the database connections a request opened in its sync thread; the metered API opens
        them only through core.orm.orm_call, which closes them itself. In the event loop request_finished's
        receivers have nothing to do: Django never opens a connection in the loop's thread.
        """
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            assert error_response is not None  # create_request returns one or the other
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request() -> HttpResponseBase:
            response = await self.run_get_response(request)
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)
            return response

        # The disconnect listener first: it raises nothing unexpected that would skip cancelling the request.
        listening = asyncio.create_task(self.listen_for_disconnect(receive))
        processing = asyncio.create_task(process_request())
        await asyncio.wait([listening, processing], return_when=asyncio.FIRST_COMPLETED)
        for task in (listening, processing):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not processing.cancelled():
            processing.result().close()  # a view may finish despite the cancel
        body_file.close()


def gateway_asgi(app: ASGIApp) -> ASGIApp:
    """`app` for everything but /v1/, which the gateway's own handler serves (behind the size limit)."""
    gateway = GatewayHandler()

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

        await gateway(scope, limited_receive, send)
        if refused:
            await _too_large(send, limit)

    return application
