"""The default price book: real models at their providers' published list prices, kept as data.

Each entry names where its prices come from and when they were read. Prices are micro-USD per million
tokens ($2.50 / 1M = 2_500_000). Open-weight models have no cached-input discount at the host quoted, so their
cached price equals the input price. Open-weight models use cl100k_base as a stand-in tokenizer (their own
tokenizers are not tiktoken encodings); the upstream's reported usage settles the charge anyway.
"""

from datetime import UTC, datetime
from typing import Any

# Seeded versions take effect from this instant, so usage at any later time finds a price.
SEED_EFFECTIVE_FROM = datetime(2024, 1, 1, tzinfo=UTC)

PRICE_BOOK: tuple[dict[str, Any], ...] = (
    {
        "slug": "gpt-4o",
        "display_name": "GPT-4o",
        "provider": "OpenAI",
        "group": "gpt-4o",
        "encoding": "o200k_base",
        "kind": "chat",
        "context_window": 128_000,
        "default_max_tokens": 4_096,
        "max_output_tokens": 16_384,
        "input_price_micro_per_mtok": 2_500_000,
        "cached_input_price_micro_per_mtok": 1_250_000,
        "output_price_micro_per_mtok": 10_000_000,
        "source": "https://openai.com/api/pricing/ (gpt-4o-2024-08-06 list price), read 2024-11",
    },
    {
        "slug": "gpt-4o-mini",
        "display_name": "GPT-4o mini",
        "provider": "OpenAI",
        "group": "gpt-4o",
        "encoding": "o200k_base",
        "kind": "chat",
        "context_window": 128_000,
        "default_max_tokens": 4_096,
        "max_output_tokens": 16_384,
        "input_price_micro_per_mtok": 150_000,
        "cached_input_price_micro_per_mtok": 75_000,
        "output_price_micro_per_mtok": 600_000,
        "source": "https://openai.com/api/pricing/ (gpt-4o-mini-2024-07-18 list price), read 2024-11",
    },
    {
        "slug": "text-embedding-3-small",
        "display_name": "text-embedding-3-small",
        "provider": "OpenAI",
        "group": "embeddings",
        "encoding": "cl100k_base",
        "kind": "embedding",
        "context_window": 8_191,
        "default_max_tokens": 0,
        "max_output_tokens": 0,
        "input_price_micro_per_mtok": 20_000,
        "cached_input_price_micro_per_mtok": 20_000,
        "output_price_micro_per_mtok": 0,
        "source": "https://openai.com/api/pricing/ (embeddings, standard), read 2024-11",
    },
    {
        "slug": "llama-3.1-8b-instruct",
        "display_name": "Llama 3.1 8B Instruct",
        "provider": "Meta (open weights), hosted",
        "group": "open-weight",
        "encoding": "cl100k_base",
        "kind": "chat",
        "context_window": 131_072,
        "default_max_tokens": 4_096,
        "max_output_tokens": 8_192,
        "input_price_micro_per_mtok": 180_000,
        "cached_input_price_micro_per_mtok": 180_000,
        "output_price_micro_per_mtok": 180_000,
        "source": "https://www.together.ai/pricing (Meta Llama 3.1 8B Instruct Turbo), read 2024-11",
    },
    {
        "slug": "llama-3.1-70b-instruct",
        "display_name": "Llama 3.1 70B Instruct",
        "provider": "Meta (open weights), hosted",
        "group": "open-weight",
        "encoding": "cl100k_base",
        "kind": "chat",
        "context_window": 131_072,
        "default_max_tokens": 4_096,
        "max_output_tokens": 8_192,
        "input_price_micro_per_mtok": 880_000,
        "cached_input_price_micro_per_mtok": 880_000,
        "output_price_micro_per_mtok": 880_000,
        "source": "https://www.together.ai/pricing (Meta Llama 3.1 70B Instruct Turbo), read 2024-11",
    },
    {
        "slug": "demo",
        "display_name": "Demo model (built in, answers offline)",
        "provider": "built in",
        "group": "demo",
        "encoding": "cl100k_base",
        "kind": "chat",
        "context_window": 8_192,
        "default_max_tokens": 256,
        "max_output_tokens": 1_024,
        "input_price_micro_per_mtok": 100_000,
        "cached_input_price_micro_per_mtok": 50_000,
        "output_price_micro_per_mtok": 200_000,
        "source": "our own price for the built-in demo model ($0.10 / $0.05 / $0.20 per 1M)",
    },
)
