"""One client per provider, created on first use and shared by every session."""

from __future__ import annotations

from dataclasses import dataclass

from core.providers.base import Provider, ProviderError


@dataclass(frozen=True)
class ProviderCredentials:
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    timeout_s: float = 120.0


class ProviderPool:
    def __init__(
        self, credentials: ProviderCredentials, providers: dict[str, Provider] | None = None
    ) -> None:
        self._credentials = credentials
        self._providers: dict[str, Provider] = dict(providers or {})

    def configured(self, provider: str) -> bool:
        creds = self._credentials
        if provider in self._providers:
            return True
        if provider == "anthropic":
            return bool(creds.anthropic_api_key)
        if provider == "openai":
            # A custom base URL (Ollama, vLLM, llama.cpp) needs no key.
            return bool(creds.openai_api_key or creds.openai_base_url)
        return False

    def get(self, provider: str) -> Provider:
        existing = self._providers.get(provider)
        if existing is not None:
            return existing
        if not self.configured(provider):
            key = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY (or OPENAI_BASE_URL)"
            raise ProviderError(f"{provider} is not configured: set {key}", retryable=False)
        created = self._create(provider)
        self._providers[provider] = created
        return created

    def _create(self, provider: str) -> Provider:
        creds = self._credentials
        if provider == "anthropic":
            from core.providers.anthropic import AnthropicProvider

            return AnthropicProvider(creds.anthropic_api_key, creds.anthropic_base_url, creds.timeout_s)
        from core.providers.openai import OpenAIProvider

        return OpenAIProvider(creds.openai_api_key, creds.openai_base_url, creds.timeout_s)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()
