"""URLs no route matches: API clients get the error shape, people get the site's page."""

import pytest


@pytest.mark.parametrize(
    ("path", "code"),
    [("/api/staff/organizations/abc/", "not_found"), ("/api/nothing/", "not_found"), ("/v1/nothing", "unknown_url")],
)
def test_unknown_api_urls_answer_404_in_the_error_shape(client, db, path, code):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == code
    assert path in response.json()["error"]["message"]


def test_unknown_pages_answer_the_sites_404_page(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"Not found" in response.content


def test_a_body_nested_too_deeply_is_a_400_not_a_500(admin_client):
    response = admin_client.post("/api/staff/organizations/", '{"a":' * 5000, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
