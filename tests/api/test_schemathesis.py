"""Schemathesis over the whole OpenAPI schema (the metered API /v1, the webhooks API and the staff REST API, as
`manage.py spectacular` writes it), against the product on a real socket: no request it makes, valid or not, may be
answered with a 5xx.

Staff operations go out as a logged-in staff member (a session cookie, with the CSRF token that writes need),
/v1 and /api/webhooks/ operations with an API key of a funded organization, so all get past authentication into
the code that reads their input. Bounded (a few examples per operation and generation mode) and derandomized, so
a run takes about a minute on two cores and repeats itself.
"""

import json
import time

import pytest
import schemathesis
from django.contrib.auth import SESSION_KEY
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.schemas import APIOperation

from accounts.services import apikey_create
from billing.ledger import services as ledger
from billing.pricing.services import price_book_seed
from tests.accounts.factories import OrganizationFactory, UserFactory

pytestmark = pytest.mark.slow

# Generated requests per operation (beside its examples and coverage cases); about 50 operations. The whole run
# takes about a minute of CPU; the time budget stops a run that hangs long before CI's own limit would.
MAX_EXAMPLES = 5
TIME_BUDGET_SECONDS = 600
CSRF_TOKEN = "schemathesisCsrfToken0123456789a"  # 32 letters and digits: a CSRF secret Django accepts


@pytest.fixture
def credentials(live_url: str) -> dict[str, dict[str, str]]:
    """Headers per API: a staff session for /api/staff/, an API key of a funded organization for /v1."""
    price_book_seed()
    organization = OrganizationFactory(name="Fuzzed Inc")
    ledger.grant_create(
        organization_id=organization.pk,
        kind="paid",
        amount_nano=100 * 10**9,
        idempotency_key="schemathesis-funds",
        actor="test",
        reason="fuzzing",
    )
    _, secret = apikey_create(organization_id=organization.pk, name="fuzz")
    _, admin_secret = apikey_create(organization_id=organization.pk, name="fuzz admin", access="admin")
    browser = Client()
    browser.force_login(UserFactory(username="fuzz@operator.example", is_staff=True))
    assert browser.session[SESSION_KEY]
    session = browser.cookies["sessionid"].value
    return {
        "staff": {"Cookie": f"sessionid={session}; csrftoken={CSRF_TOKEN}", "X-CSRFToken": CSRF_TOKEN},
        "v1": {"Authorization": f"Bearer {secret}"},
        "v1_admin": {"Authorization": f"Bearer {admin_secret}"},
    }


@pytest.fixture
def whole_schema(live_url: str) -> schemathesis.schemas.BaseSchema:
    document = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=live_url)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], with_security_parameters=False, allow_x00=True
    )
    return schema


def server_errors(operation: APIOperation, headers: dict[str, str]) -> str | None:
    """The first request of `operation` that gets a 5xx (with its curl line), or None. Schemathesis' three
    phases: the schema's examples, its coverage cases (each bound and just past it, such as limit=501 where the
    schema says 1 to 500, a string past maxLength, a missing required field), and generated input, valid and
    not."""

    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=headers, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])

    test = create_test(
        operation=operation,
        test_func=call,
        config=HypothesisTestConfig(
            project=operation.schema.config,
            modes=list(HypothesisTestMode),
            # No shrinking: every example is a round trip to the server, and the first failing one says enough.
            settings=settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        ),
    )
    try:
        test()
    except Unsatisfiable:
        return None  # nothing about the operation can be made invalid (a GET with no parameters)
    except FailureGroup as failure:
        return f"{operation.label}: {failure}"
    return None


def test_no_request_gets_a_server_error(
    whole_schema: schemathesis.schemas.BaseSchema, credentials: dict[str, dict[str, str]]
) -> None:
    started = time.monotonic()
    failures = []
    for result in whole_schema.get_all_operations():
        operation = result.ok()
        # The metered API and the webhooks API take API keys (the organization's reports an admin key); the staff
        # REST API a staff session.
        api = "v1" if operation.path.startswith(("/v1/", "/api/webhooks/")) else "staff"
        headers = credentials["v1_admin" if operation.path.startswith("/v1/organization/") else api]
        failures.append(server_errors(operation, headers))
        assert time.monotonic() - started < TIME_BUDGET_SECONDS, f"over its time budget at {operation.label}"
    assert not any(failures), "\n\n".join(filter(None, failures))
