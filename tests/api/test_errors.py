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


@pytest.mark.parametrize(
    "url",
    [
        "/api/staff/organizations/?search=%00",
        "/api/staff/organizations/?search=ok&%00=1",
        "/api/staff/price-versions/?model=llama%00",
        "/api/staff/models/llama%00/",
    ],
)
def test_a_nul_character_in_an_api_url_is_a_400_in_the_error_shape(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_value")
    assert "NUL character" in error["message"]


@pytest.mark.parametrize("url", ["/invitations/abc%00def/", "/usage/?model=%00"])
def test_a_nul_character_in_a_page_url_is_a_400_page(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert b"NUL character" in response.content


def test_urls_without_a_nul_character_pass(admin_client, org_a):
    response = admin_client.get(f"/api/staff/organizations/?search={org_a.name[:3]}%25")
    assert response.status_code == 200
