"""The OpenAPI schema generates without a single warning, and the docs page renders."""

import io

import pytest
from django.core.management import call_command


def test_the_schema_validates_with_no_warnings():
    out = io.StringIO()
    # --fail-on-warn turns every warning of drf-spectacular (any area's view) into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out)
    assert '"/api/staff/organizations/{organization_id}/credit-grants/"' in out.getvalue()


@pytest.mark.django_db
def test_the_schema_and_the_docs_page_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
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
    assert {"tokenAuth", "cookieAuth"} <= set(schema.json()["components"]["securitySchemes"])
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    # Redoc comes from the product's own static files, not a CDN: the page works with no internet.
    assert b"drf_spectacular_sidecar/redoc" in docs.content
