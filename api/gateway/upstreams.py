"""Model servers: which one answers for a model (`route_get`), and how the gateway talks to it.

A route is, in order: the staff-configured `api.models.Upstream` of the model (if enabled); the built-in demo
model for the catalogue model "demo"; the default upstream of UPSTREAM_BASE_URL / UPSTREAM_API_KEY; else the
built-in demo model (api.gateway.demo), which answers in process so the product works with no model server.

Every web process keeps one pooled HTTP client session per event loop (aiohttp: measured on the 2-core reference
machine at about a fifth of httpx's CPU per proxied call, 0.18 ms against 0.84 ms, which is most of the gateway's
own budget). The route's timeout bounds each wait on the server (connect and answer, then each chunk of a
stream), always within the call's own deadline (GATEWAY_MAX_CALL_SECONDS, enforced on streams by
api.gateway.streaming); past it the call is abandoned as a timeout (504). Errors are mapped to UpstreamFailure; the
upstream's API key is only ever put in the Authorization header.

A kept-alive connection can be closed by the server just as it is reused (its idle timeout racing ours): the
request then fails before any answer and is sent once more (`_send`). aiohttp does this itself only for idempotent
methods; a completion or an embedding changes nothing on the server, the official SDKs retry these POSTs on
connection errors too, and the caller is charged once whatever the server did, so one resend is safe here.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings

from api.gateway.cache import TTLCache
from api.models import Upstream
from core.orm import orm_call

DEMO = "demo"
HTTP = "http"
_CLIENT_ERROR_STATUSES = {400, 404, 413, 422}

_routes: TTLCache["Route"] = TTLCache("routes")
_clients: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # HTTP | DEMO
    upstream_model: str
    timeout_seconds: int
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    forwards_service_tier: bool = False  # the server honours OpenAI's service_tier


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


_ROUTE_FIELDS = ("base_url", "api_key", "upstream_model", "timeout_seconds", "forwards_service_tier")


def _route_load(model_slug: str) -> Route:
    row = Upstream.objects.filter(model__slug=model_slug, enabled=True).values_list(*_ROUTE_FIELDS).first()
    return _route_of(model_slug, row)


def _route_of(model_slug: str, row: tuple[Any, ...] | None) -> Route:
    """The route of `model_slug`: its enabled staff upstream (`row`, its _ROUTE_FIELDS), else the defaults."""
    if row is not None:
        base_url, api_key, upstream_model, timeout, tiers = row
        return Route(HTTP, upstream_model, timeout, base_url.rstrip("/"), api_key, tiers)
    if model_slug != DEMO and settings.UPSTREAM_BASE_URL:
        return Route(
            HTTP,
            model_slug,
            settings.UPSTREAM_TIMEOUT_SECONDS,
            settings.UPSTREAM_BASE_URL.rstrip("/"),
            settings.UPSTREAM_API_KEY,
            settings.UPSTREAM_FORWARDS_SERVICE_TIER,
        )
    return Route(DEMO, model_slug, settings.UPSTREAM_TIMEOUT_SECONDS)


async def route_get(model_slug: str) -> Route:
    return await _routes.get(model_slug, lambda: orm_call(_route_load, model_slug))


def served_by(route: Route) -> str:
    """Who answers a route, as GET /v1/models shows it: "demo" (the built-in demo model), or the model server's host
    name; never its scheme, port or path, and never its API key (base URLs hold no credentials)."""
    if route.kind == DEMO:
        return DEMO
    return urlsplit(route.base_url).hostname or HTTP


def served_by_models(model_slugs: list[str]) -> dict[str, str]:
    """served_by for each of `model_slugs`, with one query (synchronous ORM work, off the hot path)."""
    rows = Upstream.objects.filter(model__slug__in=model_slugs, enabled=True).values_list("model__slug", *_ROUTE_FIELDS)
    configured = {slug: tuple(rest) for slug, *rest in rows}
    return {slug: served_by(_route_of(slug, configured.get(slug))) for slug in model_slugs}


def client() -> aiohttp.ClientSession:
    """This event loop's pooled session for model servers."""
    loop = asyncio.get_running_loop()
    existing = _clients.get(loop)
    if existing is None or existing.closed:
        connector = aiohttp.TCPConnector(
            limit=settings.GATEWAY_UPSTREAM_MAX_CONNECTIONS, keepalive_timeout=30, ttl_dns_cache=60
        )
        # No cookie jar: the session serves every organization's calls, so a cookie one answer set would ride
        # along with the next caller's request.
        existing = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,
            raise_for_status=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        _clients[loop] = existing
    return existing


async def client_close() -> None:
    """Close this event loop's session (at shutdown, or at the end of a test)."""
    closing = _clients.pop(asyncio.get_running_loop(), None)
    if closing is not None:
        await closing.close()


def _headers(route: Route, *, stream: bool) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if route.api_key:
        headers["Authorization"] = f"Bearer {route.api_key}"
    return headers


def _error_message(body: bytes) -> str:
    """The upstream's own error message, if it sent one in OpenAI's shape (shortened; never its headers)."""
    try:
        parsed = json.loads(body)
        message = parsed["error"]["message"] if isinstance(parsed.get("error"), dict) else parsed.get("error")
    except (ValueError, AttributeError, KeyError, TypeError):
        return ""
    return str(message)[:500] if message else ""


def _status_failure(status: int, body: bytes) -> UpstreamFailure:
    if status in _CLIENT_ERROR_STATUSES:
        detail = _error_message(body) or f"HTTP {status}"
        return UpstreamFailure(f"The model server rejected the request: {detail}", client_error=True)
    return UpstreamFailure(f"The model server answered HTTP {status}; nothing was charged.")


def _transport_failure(exc: BaseException) -> UpstreamFailure:
    if isinstance(exc, TimeoutError):
        return UpstreamFailure("The model server did not answer in time; nothing was charged.", timeout=True)
    return UpstreamFailure(f"The model server could not be reached ({type(exc).__name__}); nothing was charged.")


def _malformed() -> UpstreamFailure:
    return UpstreamFailure("The model server sent a malformed answer; nothing was charged.")


class Answer(Protocol):
    """An upstream's streamed answer, opened (status checked) and ready to be read."""

    def events(self) -> AsyncIterator[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


def _wait_until(route: Route, deadline: float) -> float:
    """When a wait on the server that starts now gives up: after the route's timeout, or at the call's deadline."""
    return min(deadline, asyncio.get_running_loop().time() + route.timeout_seconds)


async def _send(route: Route, path: str, body: dict[str, Any], *, stream: bool) -> aiohttp.ClientResponse:
    """POST `body` and wait for the answer's status line and headers, once more if the connection was dropped
    before any of it came (see the module's docstring). A server that refuses connections is not asked twice."""
    url = f"{route.base_url}/{path}"
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = _headers(route, stream=stream)
    try:
        return await client().post(url, data=payload, headers=headers)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return await client().post(url, data=payload, headers=headers)


async def post_json(route: Route, path: str, body: dict[str, Any], *, deadline: float) -> dict[str, Any]:
    """POST `body` to the model server and return its JSON answer; UpstreamFailure otherwise."""
    try:
        async with asyncio.timeout_at(_wait_until(route, deadline)):
            async with await _send(route, path, body, stream=False) as response:
                status, raw = response.status, await response.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _transport_failure(exc) from exc
    if status != 200:
        raise _status_failure(status, raw)
    try:
        answer = json.loads(raw)
    except ValueError:
        raise _malformed() from None
    if not isinstance(answer, dict):
        raise _malformed()
    return answer


# The fields of an event stream besides `data`. Any other line (but a blank one or a ":" comment) means the body is
# not an event stream.
_SSE_OTHER_FIELDS = frozenset({b"event", b"id", b"retry"})


class HttpAnswer:
    """A streamed answer over HTTP (server-sent events). Each line must come within `idle_seconds` of the last
    (a server that stalls is a timeout); the call's total deadline is the relay's to enforce, since what was
    delivered by then is charged, not abandoned."""

    def __init__(self, response: aiohttp.ClientResponse, idle_seconds: float):
        self.response = response
        self.idle_seconds = idle_seconds

    async def _line(self) -> bytes:
        try:
            async with asyncio.timeout(self.idle_seconds):
                return await self.response.content.readline()
        except ValueError:  # a line past the reader's limit: not an event stream
            raise _malformed() from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _transport_failure(exc) from exc

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The JSON payload of each `data:` event, until `data: [DONE]` or the end of the body."""
        data: list[bytes] = []
        while True:
            raw = await self._line()
            if not raw:
                return  # the end of the body
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
                continue
            if line and line[:1] != b":" and line.partition(b":")[0] not in _SSE_OTHER_FIELDS:
                raise _malformed()  # not a server-sent event: an HTML error page, a JSON body, garbage
            if line or not data:
                continue  # comments (":"), "event:" / "id:" / "retry:" fields, keep-alive blank lines
            payload, data = b"\n".join(data), []
            if payload == b"[DONE]":
                return
            try:
                event = json.loads(payload)
            except ValueError:
                raise UpstreamFailure("The model server sent a malformed event; nothing was charged.") from None
            if not isinstance(event, dict):
                raise UpstreamFailure("The model server sent a malformed event; nothing was charged.")
            if "error" in event and "choices" not in event:
                raise UpstreamFailure("The model server reported an error in its stream; nothing was charged.")
            yield event

    async def aclose(self) -> None:
        self.response.close()


async def open_stream(route: Route, path: str, body: dict[str, Any], *, deadline: float) -> HttpAnswer:
    """Send a streaming request and wait for the answer's status; UpstreamFailure if it is not a stream."""
    until = _wait_until(route, deadline)
    try:
        async with asyncio.timeout_at(until):
            response = await _send(route, path, body, stream=True)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _transport_failure(exc) from exc
    if response.status != 200:
        raw = b""
        try:
            async with asyncio.timeout_at(until):
                raw = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            response.close()
        raise _status_failure(response.status, raw)
    if response.content_type != "text/event-stream":
        # A 200 that is not a stream (a JSON answer, an HTML page): the client asked for one, and is never sent a
        # stream that holds nothing.
        response.close()
        answered = response.content_type[:100] or "no content type"
        raise UpstreamFailure(
            f"The model server answered a stream request with {answered}, not an event stream; nothing was charged."
        )
    return HttpAnswer(response, route.timeout_seconds)
