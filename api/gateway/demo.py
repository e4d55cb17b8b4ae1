"""The built-in demo model: answers in process, with no network and no model server, so the product works
offline (the quickstart, a first try of the SDK).

It behaves like an OpenAI-compatible server: chat completions (plain and streamed, with usage in the last
chunk), and embeddings (float or base64). Its answers are deterministic: the same request always gets the
same text, and its usage counts are tiktoken's in the catalogue model's encoding.
"""

import asyncio
import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from billing import tokens

DEMO_DIMENSIONS = 256
_FILLER = (
    "It runs inside the gateway, so it needs no model server and no network, and it answers the same way every "
    "time. Every call is still metered: the prompt is counted with tiktoken before the call, credit is held for "
    "the most the call can cost, and the hold is settled at the real price when the answer is complete. Point "
    "UPSTREAM_BASE_URL at an OpenAI-compatible server, or map models to servers in the staff API, to get real "
    "answers."
)
_WORDS = re.compile(r"\S+\s*")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def reply_text(messages: list[dict[str, Any]], *, max_tokens: int, encoding: str) -> tuple[str, str]:
    """The demo's answer to `messages` within `max_tokens`, and its finish reason."""
    words = _last_user_text(messages).split()
    echo = f', ending with "{" ".join(words[-6:])}"' if words else ""
    text = f"Hello! This is the demo model, answering offline. You wrote {len(words)} words{echo}. {_FILLER}"
    cut, _count = tokens.truncate_to_tokens(text, max_tokens, encoding)
    return cut, "stop" if cut == text else "length"


def _completion_id(body: dict[str, Any]) -> str:
    digest = hashlib.sha256(repr(body.get("messages")).encode()).hexdigest()[:24]
    return f"chatcmpl-demo{digest}"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _max_tokens(body: dict[str, Any]) -> int:
    return int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)


async def chat(body: dict[str, Any], *, encoding: str) -> dict[str, Any]:
    messages = body["messages"]
    text, finish = reply_text(messages, max_tokens=_max_tokens(body), encoding=encoding)
    prompt = tokens.chat_prompt_tokens(messages, encoding)
    completion = tokens.text_tokens(text, encoding)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        for i in range(int(body.get("n") or 1))
    ]
    return {
        "id": _completion_id(body),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": _usage(prompt, completion * len(choices)),
        "system_fingerprint": "demo",
    }


class DemoAnswer:
    """A streamed demo answer: a chunk per word, then (as requested by the gateway) a usage chunk."""

    def __init__(self, body: dict[str, Any], *, encoding: str):
        self.body = body
        self.encoding = encoding

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        body = self.body
        text, finish = reply_text(body["messages"], max_tokens=_max_tokens(body), encoding=self.encoding)
        n = int(body.get("n") or 1)
        base = {"id": _completion_id(body), "object": "chat.completion.chunk", "created": int(time.time())}
        base |= {"model": body["model"], "system_fingerprint": "demo"}

        def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return base | {"choices": [choice]}

        for index in range(n):
            yield chunk(index, {"role": "assistant", "content": ""})
        for word in _WORDS.findall(text):
            for index in range(n):
                yield chunk(index, {"content": word})
            await asyncio.sleep(0)  # let other requests run between chunks, as a network would
        for index in range(n):
            yield chunk(index, {}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = tokens.chat_prompt_tokens(body["messages"], self.encoding)
            completion = tokens.text_tokens(text, self.encoding) * n
            yield base | {"choices": [], "usage": _usage(prompt, completion)}

    async def aclose(self) -> None:
        return None


def _vector(text: str, dimensions: int) -> list[float]:
    raw = hashlib.shake_256(text.encode()).digest(2 * dimensions)
    values = [v / 32768.0 for v in struct.unpack(f"<{dimensions}h", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


async def embeddings(body: dict[str, Any], *, encoding: str) -> dict[str, Any]:
    inputs = body["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dimensions = int(body.get("dimensions") or DEMO_DIMENSIONS)
    data = []
    used = 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        used += tokens.text_tokens(item, encoding) if isinstance(item, str) else len(item)
        vector = _vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": used, "total_tokens": used},
    }
