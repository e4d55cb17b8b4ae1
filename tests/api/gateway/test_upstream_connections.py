"""A model server that closes a kept-alive connection just as the gateway reuses it (its idle timeout racing the
gateway's) costs the caller nothing: the request is sent once more on a new connection. A server that drops every
request is asked twice, not forever, and the call is a 502 that costs nothing."""

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import openai
import pytest

from tests.api.gateway.conftest import MODEL, balances, reconciled, records, usd, wait_for
from tests.harness import free_port

MESSAGES = [{"role": "user", "content": "Tell me a story."}]


class DroppingProxy:
    """A TCP proxy to the stand-in that drops a connection when a request arrives on it: only once the connection
    has carried an answer (`reused`, the idle-timeout race), or always (`every`). `reset` drops with a TCP reset
    instead of a close."""

    def __init__(self, target_port: int, *, when: str, reset: bool):
        self.target_port = target_port
        self.when = when
        self.reset = reset
        self.port = free_port()
        self.connections = 0
        self.dropped = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self.dropped += 1
        if self.reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort() if self.reset else writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        answered = False

        async def from_client() -> None:
            while data := await reader.read(65536):
                if self.when == "every" or answered:
                    self._drop(writer)
                    return
                server_writer.write(data)
                await server_writer.drain()

        async def from_server() -> None:
            nonlocal answered
            while data := await server_reader.read(65536):
                answered = True
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.wait(
                [asyncio.ensure_future(from_client()), asyncio.ensure_future(from_server())],
                return_when=asyncio.FIRST_COMPLETED,
            )
        except OSError:
            pass
        finally:
            for side in (server_writer, writer):
                with contextlib.suppress(Exception):
                    side.close()

    def __enter__(self) -> "DroppingProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", self.port), self.loop).result(
            timeout=10
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def dropping(standin, settings, request) -> Iterator[DroppingProxy]:
    when, reset = request.param
    with DroppingProxy(standin.port, when=when, reset=reset) as proxy:
        settings.UPSTREAM_BASE_URL = f"http://127.0.0.1:{proxy.port}/v1"
        yield proxy


def _call(client: openai.OpenAI, *, stream: bool) -> int:
    """One call; the completion tokens the caller was told about."""
    if not stream:
        return client.chat.completions.create(model=MODEL, messages=MESSAGES).usage.completion_tokens
    chunks = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    return [chunk for chunk in chunks if chunk.usage][-1].usage.completion_tokens


@pytest.mark.parametrize("dropping", [("reused", False), ("reused", True)], indirect=True, ids=["close", "reset"])
@pytest.mark.parametrize("stream", [False, True], ids=["answer", "stream"])
def test_a_connection_closed_as_it_is_reused_is_retried_and_charged_once(client, funded, standin, dropping, stream):
    told = [_call(client, stream=stream) for _ in range(3)]
    assert told == [standin.reply_tokens] * 3
    # The second and third calls each found their kept-alive connection dropped and went again on a new one; the
    # dropped requests never reached the model server.
    assert (dropping.dropped, dropping.connections, len(standin.bodies)) == (2, 3, 3)
    wait_for(lambda: len(records()) == 3)
    assert [record.status for record in records()] == ["ok"] * 3
    spent = sum(record.charge_nano for record in records())
    assert spent > 0
    assert balances(funded) == (usd("10") - spent, 0)
    assert reconciled(funded) == []


@pytest.mark.parametrize("dropping", [("every", False), ("every", True)], indirect=True, ids=["close", "reset"])
def test_a_server_that_drops_every_request_is_asked_twice_and_costs_nothing(client, funded, standin, dropping):
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert (caught.value.status_code, caught.value.code) == (502, "upstream_error")
    assert (dropping.dropped, dropping.connections, standin.bodies) == (2, 2, [])
    wait_for(lambda: len(records()) == 1)
    assert [(record.status, record.charge_nano) for record in records()] == [("upstream_error", 0)]
    assert balances(funded) == (usd("10"), 0)
    assert reconciled(funded) == []
