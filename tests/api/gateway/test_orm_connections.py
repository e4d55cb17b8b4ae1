"""The metered API skips Django's request signals, whose receivers would close the database connections a request
opened (api.gateway.asgi). Whatever ORM work its calls do (a new key's lookup and last-used time, a model's
upstream and price, the endpoints off the hot path) hands its connection back to the pool when done."""

import httpx
import openai
from django.db import connection
from django.utils import timezone

from accounts.services import apikey_create
from tests.api.gateway.conftest import MODEL, wait_for


def checked_out() -> int:
    """Connections of Django's pool in use (this test's own among them)."""
    stats = connection.pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


def test_calls_leave_no_database_connection_checked_out(live_url, org_a, funded, standin):
    connection.ensure_connection()
    before = checked_out()
    for n in range(3):
        # A new key each time: its lookup and its first last-used time are cache misses that reach the database.
        _, secret = apikey_create(organization_id=org_a.pk, name=f"key {n}")
        client = openai.OpenAI(base_url=f"{live_url}/v1", api_key=secret, max_retries=0, timeout=30)
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
        client.models.list()
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{live_url}/v1/balance", headers=headers).status_code == 200
        event = {"id": f"event-{n}", "model": MODEL, "input_tokens": 10, "output_tokens": 5}
        event["occurred_at"] = timezone.now().isoformat()
        posted = httpx.post(f"{live_url}/v1/usage/events", json={"events": [event]}, headers=headers)
        assert posted.status_code == 200, posted.text
    wait_for(lambda: checked_out() == before)
