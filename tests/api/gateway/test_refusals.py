"""Refused calls (402, 429) are counted per UTC day, key, workflow and reason after the answer, in batches, and
shown on the usage page beside the usage."""

import openai
import pytest
from django.test import Client
from django.utils import timezone

from billing.usage.models import RefusalCount
from tests.api.gateway.conftest import MODEL, wait_for

pytestmark = pytest.mark.usefixtures("standin")

MESSAGES = [{"role": "user", "content": "hello"}]


def counts() -> dict[tuple[str, int, str], int]:
    return {(r.workflow, r.status, r.reason): r.count for r in RefusalCount.objects.all()}


def test_refusals_are_counted_by_reason_key_and_workflow(client, wallet, org_a, alice, secret, settings):
    # No credit: 402 (twice, one of them tagged with a workflow).
    for workflow in ("", "nightly"):
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model=MODEL, messages=MESSAGES, max_tokens=5, extra_headers={"X-Workflow": workflow} if workflow else {}
            )
        assert caught.value.status_code == 402
    # Larger than the organization's tokens per minute: 429, twice.
    settings.GATEWAY_ORG_TOKENS_PER_MINUTE = 1000
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2000)
    wait_for(lambda: sum(counts().values()) == 4)
    assert counts() == {
        ("", 402, "insufficient_credit"): 1,
        ("nightly", 402, "insufficient_credit"): 1,
        ("", 429, "request_too_large"): 2,
    }
    (row,) = RefusalCount.objects.filter(status=429)
    assert (row.day, row.organization_id, row.api_key.organization_id) == (timezone.now().date(), org_a.pk, org_a.pk)
    # The customer sees them on the usage page.
    browser = Client()
    browser.force_login(alice)
    page = browser.get("/usage/").content.decode()
    assert 'data-testid="refusals"' in page and "insufficient_credit" in page and "request_too_large" in page
