"""The staff credit endpoints are in the staff OpenAPI schema, which generates without a single warning."""

import io

import pytest
from django.core.management import call_command

from tests.accounts.factories import UserFactory


def test_the_schema_validates_with_no_warnings():
    out = io.StringIO()
    # --fail-on-warn turns every warning of drf-spectacular (any area's view) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    assert '"/api/staff/organizations/{organization_id}/credit-grants/"' in out.getvalue()


@pytest.mark.django_db
def test_the_staff_schema_lists_the_credit_endpoints(client):
    client.force_login(UserFactory(username="dana@operator.example", is_staff=True))
    schema = client.get("/api/staff/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/staff/organizations/",
        "/api/staff/organizations/{organization_id}/balance/",
        "/api/staff/organizations/{organization_id}/journal/",
        "/api/staff/organizations/{organization_id}/grants/{grant_id}/reversals/",
        "/api/staff/organizations/{organization_id}/overdraft/",
    ):
        assert path in paths
    assert "cookieAuth" in schema.json()["components"]["securitySchemes"]
