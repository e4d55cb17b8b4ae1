from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.services import apikey_create
from tests.web.conftest import record


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/?by=key",
        "/?by=workflow",
        "/usage/",
        "/keys/",
        "/keys/new/",
        "/members/",
        "/settings/notifications/",
        "/organizations/new/",
        "/pricing/",
        "/accounts/email/",
        "/accounts/password/change/",
    ],
)
def test_pages_render(as_alice, org_a, book, url):
    key, _ = apikey_create(organization_id=org_a.pk, name="k")
    now = timezone.now()
    for days in range(3):
        record(org_a, at=now - timedelta(days=days), key=key, workflow="wf")
    response = as_alice.get(url)
    assert response.status_code == 200, response.content.decode()[:2000]
