from django.urls import URLPattern, path, re_path

from api.gateway import balance, budgets, chat, embeddings, events, listing, organization, tokenize
from api.gateway.http import unknown_endpoint

ROUTES = [
    ("chat/completions", chat.chat_completions, "v1-chat-completions"),
    ("embeddings", embeddings.embeddings, "v1-embeddings"),
    ("models", listing.models_list, "v1-models"),
    ("models/<path:model>", listing.model_retrieve, "v1-model"),
    ("tokenize", tokenize.tokenize, "v1-tokenize"),
    ("balance", balance.balance, "v1-balance"),
    ("budgets", budgets.budgets, "v1-budgets"),
    ("usage/events", events.usage_events, "v1-usage-events"),
    # Admin keys only: the organization's billing data.
    ("organization/costs", organization.costs, "v1-organization-costs"),
    ("organization/usage/completions", organization.usage_completions, "v1-organization-usage-completions"),
    ("organization/usage/embeddings", organization.usage_embeddings, "v1-organization-usage-embeddings"),
    ("organization/balance", organization.balance, "v1-organization-balance"),
    ("organization/budgets", organization.budgets, "v1-organization-budgets"),
]

urlpatterns: list[URLPattern] = [path(route, view, name=name) for route, view, name in ROUTES]
# Anything else under /v1/ answers 404 in OpenAI's shape.
urlpatterns.append(re_path(r"^.*$", unknown_endpoint))
