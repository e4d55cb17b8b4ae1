"""Model servers: which one answers for a model (`route_get`), and how the gateway talks to it.

A route is, in order: the staff-configured `api.models.Upstream` of the model (if enabled); the built-in demo
model for the catalogue model "demo"; the default upstream of UPSTREAM_BASE_URL / UPSTREAM_API_KEY; else the
built-in demo model (api.gateway.demo), which answers in process so the product works with no model server.

Every web process keeps one pooled httpx.AsyncClient per event loop. A request has one deadline for everything
(connect, first byte, the last chunk of a stream): past it the call is abandoned as a timeout (504). Errors are
mapped to UpstreamFailure; the upstream's API key is only ever put in the Authorization header.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from django.conf import settings

from api.gateway.cache import TTLCache
from api.models import Upstream

DEMO = "demo"
HTTP = "http"
_CLIENT_ERROR_STATUSES = {400, 404, 413, 422}

_routes: TTLCache["Route"] = TTLCache("routes")
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # HTTP | DEMO
    upstream_model: str
    timeout_seconds: int
    base_url: str = ""
    api_key: str = field(default="", repr=False)


class UpstreamFailure(Exception):
    """The model server failed this request: unreachable, an error status, a malformed answer, or too slow.

    `timeout` selects 504 over 502; `client_error` marks a 4xx that is the caller's to fix (answered as 400 with
    the server's message). Nothing is charged for a failed call.
    """

    def __init__(self, message: str, *, timeout: bool = False, client_error: bool = False):
        super().__init__(message)
        self.message = message
        self.timeout = timeout
        self.client_error = client_error


async def _route_load(model_slug: str) -> Route:
    row = await (
        Upstream.objects.filter(model__slug=model_slug, enabled=True)
        .values_list("base_url", "api_key", "upstream_model", "timeout_seconds")
        .afirst()
    )
    if row is not None:
        base_url, api_key, upstream_model, timeout = row
        return Route(HTTP, upstream_model, timeout, base_url.rstrip("/"), api_key)
    if model_slug != DEMO and settings.UPSTREAM_BASE_URL:
        return Route(
            HTTP,
            model_slug,
            settings.UPSTREAM_TIMEOUT_SECONDS,
            settings.UPSTREAM_BASE_URL.rstrip("/"),
            settings.UPSTREAM_API_KEY,
        )
    return Route(DEMO, model_slug, settings.UPSTREAM_TIMEOUT_SECONDS)


async def route_get(model_slug: str) -> Route:
    return await _routes.get(model_slug, lambda: _route_load(model_slug))


def client() -> httpx.AsyncClient:
    """This event loop's pooled client for model servers."""
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is None or existing.is_closed:
        connections = settings.GATEWAY_UPSTREAM_MAX_CONNECTIONS
        existing = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=connections, max_keepalive_connections=min(connections, 256), keepalive_expiry=30
            ),
            follow_redirects=False,
        )
        _clients[loop] = existing
    return existing


async def client_close() -> None:
    """Close this event loop's client (at shutdown, or at the end of a test)."""
    closing = _clients.pop(asyncio.get_running_loop(), None)
    if closing is not None:
        await closing.aclose()


def _headers(route: Route, *, stream: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return headers


def _timeout(route: Route) -> httpx.Timeout:
    seconds = float(route.timeout_seconds)
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _error_message(response: httpx.Response) -> str:
    """The upstream's own error message, if it sent one in OpenAI's shape (shortened; never its headers)."""
    try:
        body = response.json()
        message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error")
    except (ValueError, AttributeError, KeyError, TypeError, RuntimeError):
        return ""
    return str(message)[:500] if message else ""


def _status_failure(response: httpx.Response) -> UpstreamFailure:
    if response.status_code in _CLIENT_ERROR_STATUSES:
        detail = _error_message(response) or f"HTTP {response.status_code}"
        return UpstreamFailure(f"The model server rejected the request: {detail}", client_error=True)
    return UpstreamFailure(f"The model server answered HTTP {response.status_code}; nothing was charged.")


def _transport_failure(exc: BaseException) -> UpstreamFailure:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return UpstreamFailure("The model server did not answer in time; nothing was charged.", timeout=True)
    return UpstreamFailure(f"The model server could not be reached ({type(exc).__name__}); nothing was charged.")


class Answer(Protocol):
    """An upstream's streamed answer, opened (status checked) and ready to be read."""

    def events(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


async def post_json(route: Route, path: str, body: dict[str, Any], *, deadline: float) -> dict[str, Any]:
    """POST `body` to the model server and return its JSON answer; UpstreamFailure otherwise."""
    try:
        async with asyncio.timeout_at(deadline):
            response = await client().post(
                f"{route.base_url}/{path}",
                content=json.dumps(body, separators=(",", ":")).encode(),
                headers=_headers(route, stream=False),
                timeout=_timeout(route),
            )
    except (TimeoutError, httpx.HTTPError) as exc:
        raise _transport_failure(exc) from exc
    if response.status_code != 200:
        raise _status_failure(response)
    try:
        answer = response.json()
    except ValueError:
        raise UpstreamFailure("The model server sent a malformed answer; nothing was charged.") from None
    if not isinstance(answer, dict):
        raise UpstreamFailure("The model server sent a malformed answer; nothing was charged.")
    return answer


class HttpAnswer:
    """A streamed answer over HTTP (server-sent events), read within the request's deadline."""

    def __init__(self, response: httpx.Response, deadline: float):
        self.response = response
        self.deadline = deadline

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The JSON payload of each `data:` event, until `data: [DONE]` or the end of the body."""
        lines = self.response.aiter_lines()
        data: list[str] = []
        while True:
            try:
                async with asyncio.timeout_at(self.deadline):
                    line = await anext(lines, None)
            except (TimeoutError, httpx.HTTPError) as exc:
                raise _transport_failure(exc) from exc
            if line is None:
                return
            if line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
                continue
            if line or not data:
                continue  # comments (":"), "event:" / "id:" fields, keep-alive blank lines
            payload, data = "\n".join(data), []
            if payload == "[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                raise UpstreamFailure("The model server sent a malformed event; nothing was charged.") from None
            if not isinstance(event, dict):
                raise UpstreamFailure("The model server sent a malformed event; nothing was charged.")
            if "error" in event and "choices" not in event:
                raise UpstreamFailure("The model server reported an error mid-stream; nothing was charged.")
            yield event

    async def aclose(self) -> None:
        await self.response.aclose()


async def open_stream(route: Route, path: str, body: dict[str, Any], *, deadline: float) -> HttpAnswer:
    """Send a streaming request and wait for the answer's status; UpstreamFailure if it is not a stream."""
    http = client()
    request = http.build_request(
        "POST",
        f"{route.base_url}/{path}",
        content=json.dumps(body, separators=(",", ":")).encode(),
        headers=_headers(route, stream=True),
        timeout=_timeout(route),
    )
    try:
        async with asyncio.timeout_at(deadline):
            response = await http.send(request, stream=True)
    except (TimeoutError, httpx.HTTPError) as exc:
        raise _transport_failure(exc) from exc
    if response.status_code != 200:
        try:
            async with asyncio.timeout_at(deadline):
                await response.aread()
        except (TimeoutError, httpx.HTTPError):
            pass
        finally:
            await response.aclose()
        raise _status_failure(response)
    return HttpAnswer(response, deadline)
