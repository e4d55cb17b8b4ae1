"""Which server answers each model, said where a developer looks (GET /v1/models, the quickstart's banner), and the
demo model's embeddings."""

import base64
import struct

import openai
import pytest

from api.models import Upstream
from billing import quickstart
from billing.pricing import rating
from billing.pricing.models import AIModel
from billing.tokens import text_tokens
from billing.usage.models import UsageRecord
from tests.api.gateway.conftest import balances, reconciled, records, usd, wait_for

DEMO_INPUT_PRICE = 100_000  # micro-USD per 1M input tokens


def _served_by(client: openai.OpenAI) -> dict[str, str]:
    return {model.id: model.model_extra["served_by"] for model in client.models.list()}


def test_without_an_upstream_every_model_is_served_by_the_demo_model(client, funded, settings):
    settings.UPSTREAM_BASE_URL = ""
    served_by = _served_by(client)
    assert {"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "demo"} <= set(served_by)
    assert set(served_by.values()) == {"demo"}
    assert client.models.retrieve("gpt-4o").model_extra["served_by"] == "demo"


def test_models_name_the_server_that_answers_them_and_nothing_secret(client, funded, settings, standin):
    # The default upstream (the stand-in, at 127.0.0.1) answers every model but `demo`; a staff upstream one model.
    Upstream.objects.create(
        model=AIModel.objects.get(slug="gpt-4o-mini"),
        base_url="http://vllm.internal:8000/v1",
        api_key="sk-staff-secret",
        upstream_model="mini",
    )
    served_by = _served_by(client)
    assert (served_by["gpt-4o"], served_by["demo"], served_by["gpt-4o-mini"]) == ("127.0.0.1", "demo", "vllm.internal")
    raw = client.models.with_raw_response.list().http_response.text
    assert "sk-staff-secret" not in raw and "sk-upstream-secret" not in raw and ":8000" not in raw


def test_the_demo_model_answers_embeddings_deterministically_and_is_charged_for_them(client, funded, settings):
    settings.UPSTREAM_BASE_URL = ""
    inputs = ["the first text", "a second, longer text to embed"]
    first = client.embeddings.create(model="demo", input=inputs)
    again = client.embeddings.create(model="demo", input=inputs)
    assert [d.embedding for d in first.data] == [d.embedding for d in again.data]
    assert first.data[0].embedding != first.data[1].embedding
    assert all(len(d.embedding) == 256 for d in first.data)
    assert abs(sum(v * v for v in first.data[0].embedding) - 1) < 1e-6  # unit length, as OpenAI's are
    packed = client.embeddings.with_raw_response.create(model="demo", input="x", encoding_format="base64", dimensions=8)
    assert len(struct.unpack("<8f", base64.b64decode(packed.http_response.json()["data"][0]["embedding"]))) == 8

    used = sum(text_tokens(text, "cl100k_base") for text in inputs)
    assert first.usage.prompt_tokens == used
    wait_for(lambda: UsageRecord.objects.count() == 3)
    record = records()[0]
    charge = rating.line_cost_nano(used, DEMO_INPUT_PRICE)
    assert (record.endpoint, record.model.slug, record.status) == ("embeddings", "demo", "ok")
    assert (record.input_tokens, record.output_tokens, record.charge_nano) == (used, 0, charge)
    assert balances(funded)[1] == 0 and balances(funded)[0] < usd("10")
    assert reconciled(funded) == []
    # Other chat models still refuse embeddings.
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="gpt-4o", input="hi")
    assert caught.value.code == "wrong_endpoint_for_model"


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("", "the built-in demo model answers EVERY model"),
        ("http://vllm.internal:8000/v1", "answered by the model server at vllm.internal"),
    ],
)
def test_the_quickstart_banner_says_which_server_answers(settings, base_url, says):
    settings.UPSTREAM_BASE_URL = base_url
    endpoints = quickstart.Endpoints(host="127.0.0.1", port=8000, stripe_port=8420)
    demo = {
        "api_key": "sk-tb-x",
        "login": {"email": "demo@example.com", "password": "pw"},
        "balance": "10.00",
        "currency": "USD",
        "organization_id": 1,
    }
    text = " ".join(quickstart.banner(endpoints=endpoints, demo=demo).split())
    assert says in text and "`served_by`" in text
    assert quickstart.default_route_notice() in text
