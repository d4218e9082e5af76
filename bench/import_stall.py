"""Benchmark: how long the event loop stalls while a provider SDK is imported. Prints numbers.

`import anthropic` takes seconds. Imported on the first message (the old way, `--on-loop`), it froze
the loop, and with it every platform connection and /healthz, for that long; `ProviderPool.warm_up`
imports in a worker thread at start instead. Run in a fresh interpreter each time (the import happens
once per process): `python -m bench.import_stall` and `python -m bench.import_stall --on-loop`.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from core.providers.pool import ProviderCredentials, ProviderPool

BEAT_S = 0.005


async def main(on_loop: bool) -> None:
    pool = ProviderPool(ProviderCredentials(anthropic_api_key="unused", openai_api_key="unused"))
    gaps: list[float] = []
    running = True

    async def heartbeat() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(BEAT_S)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    if on_loop:
        pool.get("anthropic")
        pool.get("openai")
    else:
        pool.warm_up()
        await pool.acquire("anthropic")
        await pool.acquire("openai")
    took = time.perf_counter() - started
    await asyncio.sleep(0.05)
    running = False
    await beat
    await pool.aclose()
    where = "on the event loop" if on_loop else "in a worker thread"
    print(f"importing anthropic + openai {where}: {took:.2f} s; longest loop stall {max(gaps) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--on-loop", action="store_true", help="import on first use, as before")
    asyncio.run(main(parser.parse_args().on_loop))
