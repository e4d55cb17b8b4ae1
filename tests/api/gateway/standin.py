"""A stand-in OpenAI-compatible model server on a real socket, for the gateway's tests and benchmark.

A small ASGI app (no framework) served by uvicorn in a thread, with switchable behaviours:

- "normal": answers `reply_tokens` tokens (never more than max_tokens) and reports usage;
- "no_usage": the same, without any usage figures;
- "inflate": reports `inflate_prompt` more prompt tokens than the prompt has (`inflate_completion`, in any
  behaviour that reports usage: more completion tokens than it sent);
- "http500": answers HTTP 500; "http400": refuses the request (HTTP 400 with a message);
- "slow": waits `delay` seconds before answering (a timeout when longer than the gateway's deadline);
- "malformed": a body that is not JSON (streams: one good chunk, then a broken event);
- "disconnect": streams: a few chunks, then the connection is dropped mid-body;
- "overproduce": ignores max_tokens and produces three times as many tokens;
- "hold": streams: the first chunk, then waits until `release()` before finishing;
- "no_choices": a JSON answer with usage but an empty `choices` list (streams: usage and [DONE], no chunk;
  embeddings: one embedding fewer than the inputs);
- streams only: "stream_json" (the plain JSON answer, content-type application/json), "stream_text_plain" (a
  good event stream sent as text/plain), "stream_garbage" (lines that are not server-sent events), "stream_empty"
  (only `data: [DONE]`), "stream_error" (an error event, then [DONE]), "truncated" (a few chunks, then the body
  ends with no finish_reason and no [DONE]), "no_done" (a whole stream but for its final `data: [DONE]`),
  "slow_first" (the status and headers at once, the first chunk `delay` seconds later);
- embeddings work in every other behaviour (8 numbers per input, usage reported).

`reasoning_tokens` adds that many hidden reasoning tokens to the completion tokens it reports (as
`completion_tokens_details.reasoning_tokens`, as OpenAI's reasoning models do), and `cached_tokens` reports that
many of the prompt tokens as cached (`prompt_tokens_details.cached_tokens`).

`usage_omit` names a figure ("prompt_tokens", "completion_tokens") left out of the usage it reports, and
`usage_without_choices` sends a stream's usage chunk with no `choices` key at all (OpenAI sends `choices: []`).

POST /_control {"behaviour": ..., "release": true, "reset": true} steers it from another process.

Its token counts are tiktoken's (cl100k_base by default), like a real server's own tokenizer.
"""

import asyncio
import json
import threading
import time
from typing import Any

import uvicorn

from billing import tokens
from tests.harness import free_port

WORD = " hello"


class StandIn:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.reset()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="critical",
            lifespan="off",
            interface="asgi3",
            backlog=4096,
            timeout_keep_alive=30,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="standin", daemon=True)

    def reset(self) -> None:
        self.behaviour = "normal"
        self.reply_tokens = 10
        self.delay = 0.0
        self.inflate_prompt = 0
        self.inflate_completion = 0
        self.encoding = "cl100k_base"
        self.released = threading.Event()
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        self.cookies: list[str] = []  # the Cookie header of each request ("" when none)
        self.set_cookie = b""  # a Set-Cookie header for JSON answers to carry
        self.open_streams = 0
        self.chunk_pause = 0.0
        self.chunk_padding = 0  # bytes of an extra field in each streamed chunk (as logprobs would add)
        self.usage_omit = ""
        self.usage_without_choices = False
        self.reasoning_tokens = 0
        self.cached_tokens = 0

    def release(self) -> None:
        self.released.set()

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the stand-in model server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.release()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    # --- the ASGI app -------------------------------------------------------------------------------------------

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        self.authorizations.append(headers.get(b"authorization", b"").decode())
        self.cookies.append(headers.get(b"cookie", b"").decode())
        try:
            body = json.loads(raw)
        except ValueError:
            await self._json(send, 400, {"error": {"message": "not JSON", "type": "invalid_request_error"}})
            return
        if scope["path"] == "/_control":
            # The benchmark runs this server in its own process and steers it over HTTP.
            if body.get("behaviour"):
                self.behaviour = body["behaviour"]
            if body.get("release"):
                self.release()
            if body.get("reset"):
                self.reset()
            await self._json(send, 200, {"open_streams": self.open_streams})
            return
        self.bodies.append(body)
        if len(self.bodies) > 10_000:
            del self.bodies[:5_000]
            del self.authorizations[:5_000]
            del self.cookies[:5_000]
        behaviour = self.behaviour
        if behaviour == "slow":
            await asyncio.sleep(self.delay)
        if behaviour == "http500":
            await self._json(send, 500, {"error": {"message": "the model crashed", "type": "server_error"}})
            return
        if behaviour == "http400":
            await self._json(send, 400, {"error": {"message": "logit_bias is not supported", "type": "invalid"}})
            return
        if scope["path"].endswith("/embeddings"):
            await self._embeddings(send, body)
        elif scope["path"].endswith("/chat/completions"):
            if body.get("stream") and behaviour == "stream_json":
                await self._complete(send, body, "normal")
            elif body.get("stream") and behaviour in ("stream_garbage", "stream_empty", "stream_error"):
                await self._raw_stream(send, behaviour)
            elif body.get("stream"):
                await self._stream(send, body, behaviour)
            else:
                await self._complete(send, body, behaviour)
        else:
            await self._json(send, 404, {"error": {"message": "no such path", "type": "invalid_request_error"}})

    async def _json(self, send: Any, status: int, payload: Any, *, raw: bytes | None = None) -> None:
        content = raw if raw is not None else json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        if self.set_cookie:
            headers.append((b"set-cookie", self.set_cookie))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _reply_tokens(self, body: dict[str, Any], behaviour: str) -> int:
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10**6
        if behaviour == "overproduce":
            return int(limit) * 3
        return min(self.reply_tokens, int(limit))

    def _usage(self, body: dict[str, Any], completion: int) -> dict[str, Any]:
        prompt = tokens.chat_prompt_tokens(body["messages"], self.encoding) + self.inflate_prompt
        completion += self.inflate_completion + self.reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        usage.pop(self.usage_omit, None)
        return usage

    async def _complete(self, send: Any, body: dict[str, Any], behaviour: str) -> None:
        if behaviour == "malformed":
            await self._json(send, 200, None, raw=b"<html>this is not the JSON you are looking for")
            return
        count = self._reply_tokens(body, behaviour)
        text = ("hello" + WORD * (count - 1)) if count else ""
        answer: dict[str, Any] = {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
        }
        if behaviour != "no_usage":
            answer["usage"] = self._usage(body, count)
        if behaviour == "no_choices":
            answer["choices"] = []
        if behaviour == "disconnect":
            content = json.dumps(answer).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")],
                }
            )
            await send({"type": "http.response.body", "body": content[:20], "more_body": True})
            raise ConnectionAbortedError("stand-in drops the connection")
        await self._json(send, 200, answer)

    async def _raw_stream(self, send: Any, behaviour: str) -> None:
        """A 200 event stream that holds no chunk: garbage lines, or nothing but [DONE]."""
        content = b"data: [DONE]\n\n"
        if behaviour == "stream_garbage":
            content = b"<html>\n<body>502 Bad Gateway</body>\n</html>\n\n"
        if behaviour == "stream_error":
            content = b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n' + content
        headers = [(b"content-type", b"text/event-stream"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _stream(self, send: Any, body: dict[str, Any], behaviour: str) -> None:
        content_type = b"text/plain" if behaviour == "stream_text_plain" else b"text/event-stream"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type), (b"cache-control", b"no-cache")],
            }
        )
        base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = body["model"]

        async def event(payload: Any) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            payload = base | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
            return payload | {"padding": "." * self.chunk_padding} if self.chunk_padding else payload

        self.open_streams += 1
        try:
            if behaviour == "slow_first":
                await asyncio.sleep(self.delay)
            count = self._reply_tokens(body, behaviour)
            if behaviour == "no_choices":
                await event(base | {"choices": [], "usage": self._usage(body, 0)})
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
                return
            await event(chunk({"role": "assistant", "content": ""}))
            for i in range(count):
                await event(chunk({"content": "hello" if i == 0 else WORD}))
                if behaviour == "hold" and i == 0:
                    while not self.released.is_set():
                        await asyncio.sleep(0.05)
                if behaviour == "malformed" and i == 0:
                    await event(b"{this is not json")
                    break
                if behaviour == "disconnect" and i == 2:
                    raise ConnectionAbortedError("stand-in drops the connection mid-stream")
                if behaviour == "truncated" and i == 2:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                if self.chunk_pause:
                    await asyncio.sleep(self.chunk_pause)
            await event(chunk({}, "length" if behaviour == "overproduce" else "stop"))
            if behaviour != "no_usage" and (body.get("stream_options") or {}).get("include_usage"):
                usage_chunk = base | {"choices": [], "usage": self._usage(body, count)}
                if self.usage_without_choices:
                    del usage_chunk["choices"]
                await event(usage_chunk)
            done = b"" if behaviour == "no_done" else b"data: [DONE]\n\n"
            await send({"type": "http.response.body", "body": done, "more_body": False})
        finally:
            self.open_streams -= 1

    async def _embeddings(self, send: Any, body: dict[str, Any]) -> None:
        inputs = body["input"]
        if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        used = sum(tokens.text_tokens(i, self.encoding) if isinstance(i, str) else len(i) for i in inputs)
        data = [{"object": "embedding", "index": i, "embedding": [0.125] * 8} for i in range(len(inputs))]
        if body.get("encoding_format") == "base64":
            import base64
            import struct

            packed = base64.b64encode(struct.pack("<8f", *([0.125] * 8))).decode()
            data = [{"object": "embedding", "index": i, "embedding": packed} for i in range(len(inputs))]
        if self.behaviour == "no_choices":
            data = data[1:]  # one embedding short
        answer = {"object": "list", "data": data, "model": body["model"]}
        answer["usage"] = {"prompt_tokens": used, "total_tokens": used}
        await self._json(send, 200, answer)
