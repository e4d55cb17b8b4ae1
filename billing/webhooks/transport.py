"""One signed POST to a customer's URL, safely.

- The host is resolved once and every address it resolves to is checked: a private, loopback, link-local,
  multicast or otherwise non-public address refuses the delivery (unless WEBHOOKS_ALLOW_PRIVATE_TARGETS). The
  connection then goes to the address that was checked, not to a second lookup of the name, so a DNS answer that
  changes between the check and the connection (DNS rebinding) cannot steer it inside. TLS still verifies the
  certificate against the host name.
- Redirects are never followed (http.client does not follow them; a 3xx counts as a failure).
- Every step is bounded by WEBHOOKS_TIMEOUT_SECONDS, the whole request by twice that, and at most
  MAX_RESPONSE_BYTES of the answer are read.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "token-billing-webhooks/1.0"


class TargetRefused(Exception):
    """The URL may not be called (a non-public address, or a name that does not resolve)."""


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Public unicast addresses only (an IPv4 address mapped into IPv6 is judged as the IPv4 address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


Resolved = tuple[socket.AddressFamily, tuple[Any, ...]]


def _addresses(host: str, port: int) -> list[Resolved]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve ({exc})") from None
    if not infos:
        raise TargetRefused(f"the host {host!r} does not resolve")
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def target_resolve(url: str) -> tuple[str, str, int, Resolved]:
    """(scheme, host, port, checked address) for `url`; TargetRefused when any address of the host is not public
    (one private answer among public ones would let a later connection land inside)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _addresses(host, port)
    if not settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS:
        for _, sockaddr in addresses:
            address = str(sockaddr[0])
            if not address_allowed(ipaddress.ip_address(address.split("%", 1)[0])):
                raise TargetRefused(
                    f"{host} resolves to {address}, a private, loopback or link-local address; "
                    "webhooks are only sent to public addresses"
                )
    return parts.scheme, host, port, addresses[0]


def _connect(address: Resolved, timeout: float | None) -> socket.socket:
    """A socket connected to exactly the resolved address (no second name lookup)."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, *, address: Resolved, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = _connect(self._address, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, *, address: Resolved, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = _connect(self._address, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(*, url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST `body` to `url`; never raises for anything the network or the receiver does."""
    started = time.monotonic()
    timeout = float(settings.WEBHOOKS_TIMEOUT_SECONDS)

    def answer(status_code: int | None, error: str) -> Answer:
        return Answer(status_code, error[:2000], int((time.monotonic() - started) * 1000))

    try:
        scheme, host, port, address = target_resolve(url)
    except TargetRefused as exc:
        return answer(None, f"refused: {exc}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, address=address, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={**headers, "Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        response = connection.getresponse()
        deadline = started + 2 * timeout
        received = 0
        while received < MAX_RESPONSE_BYTES and time.monotonic() < deadline:
            chunk = response.read1(MAX_RESPONSE_BYTES - received)
            if not chunk:
                break
            received += len(chunk)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return answer(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    finally:
        connection.close()
    if 300 <= status < 400:
        return answer(status, f"the endpoint answered a redirect ({status}); redirects are not followed")
    if not 200 <= status < 300:
        return answer(status, f"the endpoint answered {status}")
    return answer(status, "")
