from django.urls import path, re_path

from api.gateway import balance, chat, embeddings, events, listing, tokenize
from api.gateway.http import unknown_endpoint

urlpatterns = [
    path("chat/completions", chat.chat_completions, name="v1-chat-completions"),
    path("embeddings", embeddings.embeddings, name="v1-embeddings"),
    path("models", listing.models_list, name="v1-models"),
    path("models/<path:model>", listing.model_retrieve, name="v1-model"),
    path("tokenize", tokenize.tokenize, name="v1-tokenize"),
    path("balance", balance.balance, name="v1-balance"),
    path("usage/events", events.usage_events, name="v1-usage-events"),
    re_path(r"^.*$", unknown_endpoint),
]
