"""Provider-qualified model ids, what we know about each model, and its price.

Syntax: `provider:model`, e.g. `anthropic:claude-sonnet-5-5` or `openai:gpt-5.4-mini`. `openai:` also
names any OpenAI-compatible server (Ollama, vLLM, llama.cpp) reached through OPENAI_BASE_URL. A bare
`claude-*` or `gpt-*`/`o<digit>*` name is accepted and qualified for convenience. A name is at most
MAX_MODEL_ID_CHARS long and made of ASCII letters, digits and `. _ - : / @ +` (what the providers'
model ids, Ollama tags and OpenAI-compatible servers use); nothing else reaches a provider or the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PROVIDERS = ("anthropic", "openai")

_BARE_PREFIXES = (("claude", "anthropic"), ("gpt", "openai"), ("chatgpt", "openai"))
_O_SERIES = re.compile(r"^o\d")
_DATE_SUFFIX = re.compile(r"-(20\d{6}|\d{4}-\d{2}-\d{2}|latest)$")
MAX_MODEL_ID_CHARS = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_SHOWN_CHARS = 40  # how much of a bad id an error message quotes


def shown_id(text: str) -> str:
    """`text` quoted for an error message, cut short: a refusal never echoes a huge or odd input."""
    short = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"
    return repr(short)


@dataclass(frozen=True, slots=True)
class ModelId:
    provider: str
    name: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.name}"


def parse_model_id(raw: str) -> ModelId:
    """Parse `provider:model`; raise ValueError with a message fit for a user or a settings error."""
    text = raw.strip()
    if not text:
        raise ValueError("model id is empty; use provider:model, e.g. anthropic:claude-sonnet-5-5")
    if len(text) > MAX_MODEL_ID_CHARS:
        raise ValueError(
            f"model id {shown_id(text)} is {len(text):,} characters long; the limit is {MAX_MODEL_ID_CHARS}"
        )
    provider, sep, name = text.partition(":")
    if sep:
        provider = provider.strip().lower()
        name = name.strip()
        if provider not in PROVIDERS:
            raise ValueError(
                f"unknown provider {shown_id(provider)} in {shown_id(text)}; use one of "
                f"{', '.join(PROVIDERS)} (openai: also covers OpenAI-compatible servers)"
            )
        if not name:
            raise ValueError(f"model name missing in {shown_id(text)}")
        return ModelId(provider, _checked_name(name))
    lowered = text.lower()
    for prefix, inferred in _BARE_PREFIXES:
        if lowered.startswith(prefix):
            return ModelId(inferred, _checked_name(text))
    if _O_SERIES.match(lowered):
        return ModelId("openai", _checked_name(text))
    if _NAME.fullmatch(text) is None:
        _checked_name(text)  # says what is wrong with the characters
    raise ValueError(
        f"cannot tell the provider of {shown_id(text)}; write it as anthropic:{text} or openai:{text}"
    )


def _checked_name(name: str) -> str:
    if _NAME.fullmatch(name) is None:
        raise ValueError(
            f"model name {shown_id(name)} has characters a model name cannot have; use letters, digits "
            "and . _ - : / @ +"
        )
    return name


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


def _anthropic(inp: float, out: float, read_share: float = 0.1) -> Price:
    # Anthropic: cache reads cost a share of input (10%, 5% for the 5.5 models), 5-minute writes 125%.
    return Price(inp, out, round(inp * read_share, 6), round(inp * 1.25, 6))


def _openai(inp: float, cached: float, out: float) -> Price:
    return Price(inp, out, cached, 0.0)  # OpenAI does not bill cache writes


# Public list prices as of 2026-11 (USD per million tokens, standard tier, short context).
# Override or extend with BOT_PRICING; models missing here are recorded at unknown cost.
DEFAULT_PRICES: dict[str, Price] = {
    "anthropic:claude-fable-5-1": _anthropic(10.0, 50.0, 0.025),
    "anthropic:claude-mythos-5-1": _anthropic(10.0, 50.0, 0.025),
    "anthropic:claude-fable-5": _anthropic(10.0, 50.0),
    "anthropic:claude-mythos-5": _anthropic(10.0, 50.0),
    "anthropic:claude-opus-5-5": _anthropic(4.0, 20.0, 0.05),
    "anthropic:claude-opus-5": _anthropic(5.0, 25.0),
    "anthropic:claude-opus-4-8": _anthropic(5.0, 25.0),
    "anthropic:claude-opus-4-7": _anthropic(5.0, 25.0),
    "anthropic:claude-opus-4-6": _anthropic(5.0, 25.0),
    "anthropic:claude-opus-4-5": _anthropic(5.0, 25.0),
    "anthropic:claude-opus-4-1": _anthropic(15.0, 75.0),
    "anthropic:claude-opus-4": _anthropic(15.0, 75.0),
    "anthropic:claude-sonnet-5-5": _anthropic(2.0, 10.0),
    "anthropic:claude-sonnet-5": _anthropic(2.0, 10.0),
    "anthropic:claude-sonnet-4-6": _anthropic(3.0, 15.0),
    "anthropic:claude-sonnet-4-5": _anthropic(3.0, 15.0),
    "anthropic:claude-sonnet-4": _anthropic(3.0, 15.0),
    "anthropic:claude-haiku-5-5": _anthropic(0.10, 0.50),  # prompts up to 100k tokens
    "anthropic:claude-haiku-4-5": _anthropic(1.0, 5.0),
    "anthropic:claude-3-5-haiku": _anthropic(0.8, 4.0),
    "openai:gpt-5.5": _openai(5.0, 0.5, 30.0),
    "openai:gpt-5.4": _openai(2.5, 0.25, 15.0),
    "openai:gpt-5.4-mini": _openai(0.75, 0.075, 4.5),
    "openai:gpt-5.4-nano": _openai(0.20, 0.02, 1.25),
    "openai:gpt-5": _openai(1.25, 0.125, 10.0),
    "openai:gpt-5-mini": _openai(0.25, 0.025, 2.0),
    "openai:gpt-5-nano": _openai(0.05, 0.005, 0.4),
    "openai:gpt-4.1": _openai(2.0, 0.5, 8.0),
    "openai:gpt-4.1-mini": _openai(0.4, 0.1, 1.6),
    "openai:gpt-4.1-nano": _openai(0.1, 0.025, 0.4),
    "openai:gpt-4o": _openai(2.5, 1.25, 10.0),
    "openai:gpt-4o-mini": _openai(0.15, 0.075, 0.6),
}

# Context windows in tokens, by model-name prefix (longest prefix wins).
_CONTEXT_WINDOWS: dict[str, int] = {
    "anthropic:claude": 200_000,
    "anthropic:claude-fable-5": 1_000_000,
    "anthropic:claude-mythos-5": 1_000_000,
    "anthropic:claude-opus-5": 1_000_000,
    "anthropic:claude-sonnet-5": 1_000_000,
    "anthropic:claude-haiku-5": 1_000_000,
    "anthropic:claude-opus-4-6": 1_000_000,
    "anthropic:claude-opus-4-7": 1_000_000,
    "anthropic:claude-opus-4-8": 1_000_000,
    "anthropic:claude-sonnet-4-6": 1_000_000,
    "openai:gpt-5": 400_000,
    "openai:gpt-5.4": 1_000_000,
    "openai:gpt-5.5": 1_000_000,
    "openai:gpt-4.1": 1_000_000,
    "openai:gpt-4o": 128_000,
    "openai:o": 200_000,
}
DEFAULT_CONTEXT_WINDOW = 32_000  # unknown (often local) models: assume little


def _lookup_key(model: ModelId) -> str:
    return f"{model.provider}:{_DATE_SUFFIX.sub('', model.name.lower())}"


class PriceTable:
    """Prices by qualified model id; a dated name (claude-sonnet-4-5-20250929) uses its base price."""

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES)
        for key, price in (overrides or {}).items():
            self._prices[str(parse_model_id(key)).lower()] = price

    def price_of(self, model: ModelId) -> Price | None:
        return self._prices.get(str(model).lower()) or self._prices.get(_lookup_key(model))

    def cost(
        self, model: ModelId, *, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
    ) -> float | None:
        price = self.price_of(model)
        if price is None:
            return None
        total = (
            input_tokens * price.input
            + output_tokens * price.output
            + cache_read * price.cache_read
            + cache_write * price.cache_write
        )
        return total / 1_000_000

    def cache_savings(self, model: ModelId, cache_read: int) -> float | None:
        """What cache reads saved compared with paying full input price for the same tokens."""
        price = self.price_of(model)
        if price is None:
            return None
        return cache_read * (price.input - price.cache_read) / 1_000_000


def context_window(model: ModelId) -> int:
    key = _lookup_key(model)
    best = max((p for p in _CONTEXT_WINDOWS if key.startswith(p)), key=len, default=None)
    return _CONTEXT_WINDOWS[best] if best else DEFAULT_CONTEXT_WINDOW
