"""Reading and checking what clients send to the metered API: JSON bodies, chat and embedding parameters, the
workflow tag. Every problem is a GatewayError 400/413 naming the parameter, never a 500."""

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.services.apikeys import WORKFLOW_RE
from api.gateway.http import GatewayError
from billing.metering.callers import AuthenticatedKey

SERVICE_TIERS = {"auto": "default", "default": "default", "flex": "flex", "priority": "priority"}
MAX_CHOICES = 8
MAX_MESSAGES = 10_000
MAX_EMBEDDING_INPUTS = 2_048
MAX_STOPS = 4
WORKFLOW_HEADER = "X-Workflow"
# Integers must fit in 64 bits (what model servers and PostgreSQL's bigint take). The body is walked to find a
# larger one only if it has a run of 19 digits, found by mapping digits to NUL bytes (which valid JSON cannot
# hold) and searching for 19 of them: about two microseconds for a chat request, ten times less than a regular
# expression (and, for arrays of token ids, than a parse hook called for each integer).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_DIGITS_AS_NUL = bytes.maketrans(b"0123456789", b"\x00" * 10)
_LONG_NUMBER = b"\x00" * 19
# A NUL character can only reach a string through this escape (a raw NUL byte is not valid JSON).
_NUL_ESCAPE = b"\\u0000"
# The deepest nesting a body may have. Counting a body's JSON and passing it on recurse once per level, so a body
# the parser accepts could still exhaust the stack there; JSON schemas in tools and response_format stay far below.
MAX_DEPTH = 64


class _BadNumber(ValueError):
    """A JSON number the gateway cannot pass on: NaN, Infinity, or a float too large for 64 bits."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"The number {text[:40]} is too large.")
    return value


def _no_constant(name: str) -> float:
    raise _BadNumber(f"{name} is not a number JSON allows.")


def invalid(message: str, *, param: str | None = None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def json_body(request: HttpRequest) -> tuple[dict[str, Any], int]:
    """The request's JSON object and its size in bytes; 413 past GATEWAY_MAX_BODY_BYTES, 400 if it is not a JSON
    object or is nested more than MAX_DEPTH levels deep."""
    limit = settings.GATEWAY_MAX_BODY_BYTES
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise invalid("The Content-Length header is not a number.", code="invalid_request") from None
    if declared > limit:
        raise too_large(limit)
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large(limit)
    if not raw.strip():
        raise invalid("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)
    except _BadNumber as exc:
        raise invalid(f"The request body has a number out of range: {exc}", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid(f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    except RecursionError:
        raise invalid("The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    # Only a body with more brackets than MAX_DEPTH can be nested that deep: most are not walked at all.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _nested_deeper(body, MAX_DEPTH):
        raise invalid(f"The request body is nested more than {MAX_DEPTH} levels deep.", code="invalid_json")
    if _NUL_ESCAPE in raw or _LONG_NUMBER in raw.translate(_DIGITS_AS_NUL):
        _values_check(body)
    return body, len(raw)


def _nested_deeper(body: dict[str, Any], limit: int) -> bool:
    """Whether `body` has objects or arrays nested more than `limit` levels deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _values(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every key and scalar in `value` with its path ("messages[0].content"), walked without recursion (the body
    may be nested as deeply as the JSON parser allows)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                yield child, key
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        else:
            yield path, value


def _values_check(body: dict[str, Any]) -> None:
    """No string with a NUL character (PostgreSQL cannot store one, and model servers choke on it) and no integer
    beyond 64 bits, anywhere in the body: a 400 naming where it is."""
    for path, value in _values(body, ""):
        if isinstance(value, str) and "\x00" in value:
            shown = path.replace("\x00", "\\u0000")
            raise invalid(f"{shown} contains the NUL character (\\u0000), which is not allowed.", param=shown)
        if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
            raise invalid(f"{path} is out of range: integers must be between {INT_MIN} and {INT_MAX}.", param=path)


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")


def required_str(body: dict[str, Any], name: str, *, max_length: int = 200) -> str:
    value = body.get(name)
    if value is None:
        raise invalid(f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise invalid(f"'{name}' must be a non-empty string of at most {max_length} characters.", param=name)
    return value


def optional_int(body: dict[str, Any], name: str, *, minimum: int, maximum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{name}' must be an integer.", param=name)
    if not minimum <= value <= maximum:
        raise invalid(f"'{name}' must be between {minimum} and {maximum}; got {value}.", param=name)
    return value


def optional_number(body: dict[str, Any], name: str, *, minimum: float, maximum: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{name}' must be a number.", param=name)
    if not minimum <= value <= maximum:
        raise invalid(f"'{name}' must be between {minimum:g} and {maximum:g}; got {value}.", param=name)
    return value


def optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be true or false.", param=name)
    return value


def service_tier_of(body: dict[str, Any]) -> str:
    """The price tier asked for ("auto" and no value mean the default tier)."""
    value = body.get("service_tier")
    if value is None:
        return "default"
    if not isinstance(value, str) or value not in SERVICE_TIERS:
        raise invalid(f"'service_tier' must be one of {', '.join(SERVICE_TIERS)}.", param="service_tier")
    return SERVICE_TIERS[value]


def workflow_of(request: HttpRequest, body: dict[str, Any], key: AuthenticatedKey) -> str:
    """The workflow/project the usage is attributed to: the X-Workflow header, else metadata.workflow (removed
    from what is forwarded), else the key's own label."""
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("'metadata' must be an object of strings.", param="metadata")
    from_body = metadata.pop("workflow", None) if metadata else None
    if metadata is not None and not metadata:
        body.pop("metadata")
    value = request.headers.get(WORKFLOW_HEADER) or from_body
    if value is None or value == "":
        return key.workflow
    if not isinstance(value, str) or not WORKFLOW_RE.match(value):
        raise invalid(
            "The workflow tag must be up to 100 letters, digits or . _ : / - and start with a letter or digit.",
            param="metadata.workflow",
            code="invalid_workflow",
        )
    return value


@dataclass(slots=True)
class ChatParams:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    stream: bool
    include_usage: bool
    max_tokens: int | None  # None: the model's default
    max_tokens_param: str  # the name the client used ("max_tokens" or "max_completion_tokens")
    n: int
    service_tier: str


def chat_params(body: dict[str, Any]) -> ChatParams:
    model = required_str(body, "model")
    messages = body.get("messages")
    if messages is None:
        raise invalid("Missing required parameter: 'messages'.", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array of message objects.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise invalid(f"'messages' may hold at most {MAX_MESSAGES} messages.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages[{index}] must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise invalid(f"messages[{index}].role must be a string.", param=f"messages[{index}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise invalid(
                f"messages[{index}].content must be a string or an array of content parts.",
                param=f"messages[{index}].content",
            )
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise invalid("'tools' must be an array of tool objects.", param="tools")
    stream = optional_bool(body, "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        if not isinstance(options, dict):
            raise invalid("'stream_options' must be an object.", param="stream_options")
    include_usage = optional_bool(options or {}, "include_usage")
    given = [name for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None]
    if len(given) > 1:
        raise invalid("Send either 'max_tokens' or 'max_completion_tokens', not both.", param="max_tokens")
    max_tokens_param = given[0] if given else "max_tokens"
    max_tokens = optional_int(body, max_tokens_param, minimum=1, maximum=10_000_000)
    n = optional_int(body, "n", minimum=1, maximum=MAX_CHOICES) or 1
    _sampling_check(body)
    return ChatParams(
        model=model,
        messages=messages,
        tools=tools,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        max_tokens_param=max_tokens_param,
        n=n,
        service_tier=service_tier_of(body),
    )


def _sampling_check(body: dict[str, Any]) -> None:
    """The OpenAI sampling parameters, checked as OpenAI does: a wrong one is the caller's 400 here, not a model
    server's error after the credit was held (or a value a lenient server silently ignores)."""
    optional_number(body, "temperature", minimum=0, maximum=2)
    optional_number(body, "top_p", minimum=0, maximum=1)
    optional_number(body, "presence_penalty", minimum=-2, maximum=2)
    optional_number(body, "frequency_penalty", minimum=-2, maximum=2)
    optional_int(body, "seed", minimum=INT_MIN, maximum=INT_MAX)
    optional_bool(body, "logprobs")
    optional_int(body, "top_logprobs", minimum=0, maximum=20)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string.", param="user")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stop is not None and not (
        isinstance(stops, list) and len(stops) <= MAX_STOPS and all(isinstance(s, str) for s in stops)
    ):
        raise invalid(f"'stop' must be a string or an array of up to {MAX_STOPS} strings.", param="stop")


@dataclass(slots=True)
class EmbeddingParams:
    model: str
    inputs: list[str | list[int]]


def embedding_params(body: dict[str, Any]) -> EmbeddingParams:
    model = required_str(body, "model")
    value = body.get("input")
    if value is None:
        raise invalid("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str) or (isinstance(value, list) and value and _is_token_list(value)):
        inputs: list[Any] = [value]
    elif isinstance(value, list) and value:
        inputs = value
    else:
        raise invalid("'input' must be a string, an array of strings, or an array of token arrays.", param="input")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise invalid(f"'input' may hold at most {MAX_EMBEDDING_INPUTS} items.", param="input")
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            if not item:
                raise invalid(f"input[{index}] is empty.", param="input")
        elif not (isinstance(item, list) and item and _is_token_list(item)):
            raise invalid(f"input[{index}] must be a non-empty string or an array of token ids.", param="input")
    optional_int(body, "dimensions", minimum=1, maximum=65_536)
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ("float", "base64"):
        raise invalid("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    return EmbeddingParams(model=model, inputs=inputs)


def _is_token_list(value: list[Any]) -> bool:
    return all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1_000_000 for t in value)
