"""Prometheus metrics for the bot process, fed at the edges (the core never imports prometheus).

`Metrics` owns its own CollectorRegistry, so several app instances (tests) never collide. It observes the
event stream of every turn by wrapping `Router.handle` on the router instance (`instrument`), is the
adapters' `PlatformObserver` (429s and failed replies by platform, passed in their `AdapterContext`), the
supervisor's `SupervisionObserver` (adapters failing and coming back, bot/serve.py), and serves `/metrics`
on the bot's HTTP server (`handler`), with the standard process and Python collectors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from core.events import (
    TERMINAL_EVENTS,
    AgentEvent,
    CommandReply,
    Refused,
    TextDelta,
    ToolFinished,
    TurnDone,
    TurnFailed,
    UsageReport,
)
from core.inbound import InboundMessage
from core.router import Router

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_* (CPU, memory, open fds), python_info and python_gc_* series.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.events_in = Counter(
            "bot_platform_events", "Platform events handed to the router", ["platform"], registry=r
        )
        self.replies_out = Counter(
            "bot_replies", "Turns and commands answered, by outcome", ["platform", "kind"], registry=r
        )
        self.first_text = Histogram(
            "bot_time_to_first_text_seconds",
            "From the event to the first visible text of the answer",
            ["platform"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.provider_latency = Histogram(
            "bot_provider_latency_seconds",
            "One provider call (a model step), measured from the step start to its usage report",
            ["provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("bot_tokens", "Tokens by model and kind", ["model", "kind"], registry=r)
        self.cost = Counter("bot_cost_usd", "Cost in USD by model (known prices only)", ["model"], registry=r)
        self.tool_calls = Counter(
            "bot_tool_calls", "Tool calls by tool and outcome", ["tool", "outcome"], registry=r
        )
        self.rate_limited_total = Counter(
            "bot_platform_rate_limited", "HTTP 429 answers from a chat platform", ["platform"], registry=r
        )
        self.errors = Counter(
            "bot_errors",
            "Failed turns, handler errors and replies the platform refused",
            ["platform", "reason"],
            registry=r,
        )

        self.adapter_restarts = Counter(
            "bot_adapter_restarts",
            "Adapters that failed and are being started again (bot/serve.py supervision)",
            ["platform"],
            registry=r,
        )
        self.adapter_running = Gauge(
            "bot_adapter_up",
            "1 once the adapter connected, 0 while it is down (failed, waiting to be restarted)",
            ["platform"],
            registry=r,
        )

    # --- bot.serve.SupervisionObserver: adapters failing and coming back -----------------------------

    def adapter_restarting(self, platform: str) -> None:
        self.adapter_restarts.labels(platform).inc()

    def adapter_up(self, platform: str, up: bool) -> None:
        self.adapter_running.labels(platform).set(1 if up else 0)

    # --- core.adapter.PlatformObserver: what the adapters report about their platform's API ---------

    def rate_limited(self, platform: str, method: str | None = None) -> None:
        """One HTTP 429 from a platform. `method` is not a label: platform is what an alert needs."""
        self.rate_limited_total.labels(platform).inc()

    def platform_error(self, platform: str, kind: str) -> None:
        """A reply the platform refused or failed (`bot_errors_total{reason="platform_api"}`)."""
        self.errors.labels(platform, kind).inc()

    def instrument(self, router: Router) -> None:
        """Observe every event stream the router yields (to adapters' surfaces and to `handle`)."""
        router.observe_events(self.observe)

    async def observe(
        self, message: InboundMessage, events: AsyncIterator[AgentEvent]
    ) -> AsyncIterator[AgentEvent]:
        platform = message.ref.platform
        self.events_in.labels(platform).inc()
        started = step_start = time.monotonic()
        seen_text = False
        try:
            async for event in events:
                now = time.monotonic()
                visible = isinstance(event, TextDelta | CommandReply | Refused) or (
                    isinstance(event, TurnDone) and bool(event.text)
                )
                if visible and not seen_text:
                    seen_text = True
                    self.first_text.labels(platform).observe(now - started)
                if isinstance(event, UsageReport):
                    self._usage(event, now - step_start)
                    step_start = now
                elif isinstance(event, ToolFinished):
                    self.tool_calls.labels(event.name, "error" if event.is_error else "ok").inc()
                    step_start = now
                if isinstance(event, TERMINAL_EVENTS):
                    self._terminal(platform, event)
                yield event
        except Exception as error:
            self.errors.labels(platform, type(error).__name__).inc()
            raise
        finally:
            aclose = getattr(
                events, "aclose", None
            )  # a renderer that stops early closes the inner stream too
            if aclose is not None:
                await aclose()

    def _usage(self, usage: UsageReport, latency_s: float) -> None:
        model = f"{usage.provider}:{usage.model}"
        self.provider_latency.labels(usage.provider, usage.model).observe(latency_s)
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
        ):
            if count:
                self.tokens.labels(model, kind).inc(count)
        if usage.cost_usd:
            self.cost.labels(model).inc(usage.cost_usd)

    def _terminal(self, platform: str, event: Any) -> None:
        if isinstance(event, TurnDone):
            self.replies_out.labels(platform, "answer").inc()
        elif isinstance(event, TurnFailed):
            self.replies_out.labels(platform, "failed").inc()
            self.errors.labels(platform, event.reason).inc()
        elif isinstance(event, CommandReply):
            self.replies_out.labels(platform, "command").inc()
        else:
            self.replies_out.labels(platform, "refused").inc()

    async def handler(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
