"""The metered API (/v1) in the OpenAPI schema.

The /v1 views are async views on a lean handler of their own, not DRF views, so drf-spectacular cannot discover
them: their paths, bodies, errors and headers are written here, from the views and docs/api.md, and merged into
the generated schema by `gateway_paths_add` (a drf-spectacular postprocessing hook). Nothing here runs when a
call is served. The limits quoted come from the modules that enforce them, so the two cannot drift apart.
"""

from typing import Any

from django.conf import settings

from api.gateway.schema import organization
from api.gateway.schema.bodies import SCHEMAS
from api.gateway.schema.paths import PATHS, TAGS
from api.gateway.schema.responses import HEADERS, RESPONSES

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "apiKeyAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`sk-tb-...`) from the API keys page: `Authorization: Bearer sk-tb-...`. Its "
            "scopes may limit the endpoints and models it can call.",
        },
        "adminKeyAuth": organization.SECURITY_SCHEME,
    },
    "headers": HEADERS,
    "responses": RESPONSES,
    "schemas": {**SCHEMAS, **organization.SCHEMAS},
}

DESCRIPTION = """\
An OpenAI-compatible API: the official `openai` SDKs work by changing only the base URL (`https://<host>/v1`) and
the API key. Every call is counted in tokens, priced at the organization's prices, and paid from its prepaid
credit; no call can spend credit the organization does not have.

## Authentication

`Authorization: Bearer sk-tb-...`, an API key from the API keys page.

Admin keys (`adminKeyAuth`) read the organization's costs, usage and balance (/v1/organization/...) and call no
model; metered keys cannot read those.

## Errors

Every error has OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 bad input, 401 bad key,
402 not enough credit, a key's spend limit or a hard budget reached (the message names the largest `max_tokens`
that fits, and `error.details` says which limit refused, what is left, what the call needed, the affordable
`max_tokens`, the model's prices, when a budget resets and where to add credit), 403 key not allowed, 404 unknown
model or path, 413 body too large, 429 rate limited (with `retry-after` and `x-ratelimit-*`), 502 / 504 the model
server failed or timed out. Nothing is charged for a call that fails.

## Response headers

Metered calls carry `x-request-id`, the charge (`x-billing-charge`, `x-billing-charge-nano`), the credit left
(`x-billing-balance-remaining`, `-nano`), `x-billing-currency`, `x-billing-workflow` and OpenAI's
`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; streams carry the hold (`x-billing-hold`) instead of
the charge, which comes in the last chunk.
"""


def gateway_paths_add(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the /v1 paths, their components and tags, merged into the schema."""
    result["paths"] = {**PATHS, **organization.PATHS, **result.get("paths", {})}
    components = result.setdefault("components", {})
    for section, entries in COMPONENTS.items():
        components[section] = {**components.get(section, {}), **entries}
    result["tags"] = [*TAGS, organization.TAG, *result.get("tags", [])]
    # The servers' limit on the body, as configured (the default is 8 MiB).
    components["responses"]["RequestTooLarge"] = RESPONSES["RequestTooLarge"] | {
        "description": f"The body is larger than {settings.GATEWAY_MAX_BODY_BYTES} bytes (GATEWAY_MAX_BODY_BYTES)."
    }
    return result
