"""One client per provider, created on first use and shared by every session.

The SDKs take seconds to import (`anthropic` about 2.5 s on a 2-core machine). Imported on first use,
that would freeze the event loop, and with it every platform, when the first message arrives; so
`warm_up` imports the configured providers' modules in a worker thread at start, and `acquire` waits
for that instead of importing on the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.providers.base import Provider, ProviderError

log = logging.getLogger(__name__)
MODULES = {"anthropic": "core.providers.anthropic", "openai": "core.providers.openai"}


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
        self._warming: asyncio.Future[None] | None = None

    def warm_up(self, modules: Sequence[str] | None = None, then: Callable[[], None] | None = None) -> None:
        """Start importing `modules` (default: the configured providers') in a worker thread (see the
        module docstring), then create the configured providers' clients on the loop (their TLS context
        and transport, ~50 ms, would otherwise be built when the first message arrives) and call `then`."""
        if self._warming is not None:
            return
        configured = [name for name in MODULES if name not in self._providers and self.configured(name)]
        wanted = list(modules) if modules is not None else [MODULES[name] for name in configured]
        self._warming = asyncio.ensure_future(self._warm(wanted, configured, then))

    async def _warm(self, modules: list[str], providers: list[str], then: Callable[[], None] | None) -> None:
        if modules:
            await asyncio.to_thread(_import_all, modules)
        for name in providers:
            try:
                self.get(name)
            except Exception:  # reported again where a message needs it
                log.warning("could not create the %s client at start", name, exc_info=True)
        if then is not None:
            then()

    def warmed(self) -> bool:
        """The start-up import is done (readiness: a message now never waits for it)."""
        return self._warming is None or self._warming.done()

    async def acquire(self, provider: str) -> Provider:
        """`get`, once the start-up import is done (it is, but for the first seconds after start)."""
        if provider not in self._providers and self._warming is not None and not self._warming.done():
            await asyncio.shield(self._warming)
        return self.get(provider)

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
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)  # a thread cannot be cancelled
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


def _import_all(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # the import on first use raises it again, where it is reported
            log.warning("could not import %s at start", module, exc_info=True)
