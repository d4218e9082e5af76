"""Benchmark: streams at scale (issue 12). Prints numbers; asserts nothing.

What a user feels with N conversations at once: the bot is its own process (`python -m bot run`,
SQLite), the fake platform and the fake LLM server (real SSE through the real `anthropic` SDK) run in
this process, each reply is 200 tokens at 50 tokens/s after 0.3 s, and N conversations send their
first message at once (`--n 10,100,500`) or at a steady rate (`--steady 20` conversations a second).

For each platform and N it prints: added latency to the first visible text (from the event to the
first words on the platform, minus the model's own 0.3 s to its first token) p50/p99, time to the
final text p50/p99, exact final text %, platform 429s, platform calls per reply, the bot process's CPU
seconds per reply (user + system, read from /proc over the run) and its peak RSS.

This process also hosts the fakes and polls what they show every 20 ms; at large N it competes with
the bot for the machine's cores, so the load average is printed with every table.

Run: `python -m bench.streams` (Slack, Telegram and Discord at N = 10 and 100), or e.g.
`python -m bench.streams --platform telegram --n 500 --tokens 200`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.delivery import PLATFORMS, Options, Stage, first_turns
from bench.drivers import SlackDriver
from bench.harness import BotProcess, Watch, base_env, load_average, percentile, table
from tests.fakes.llm_server import FakeLLMServer
from tests.pgserver import PostgresServer
from tests.ports import free_port

CLOCK_TICKS = 100  # /proc/<pid>/stat counts CPU time in clock ticks (USER_HZ, 100 on Linux)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ms(samples: Sequence[float]) -> str:
    if not samples:
        return "-"
    return f"{percentile(samples, 0.5) * 1000:.0f} / {percentile(samples, 0.99) * 1000:.0f} ms"


def s(samples: Sequence[float]) -> str:
    if not samples:
        return "-"
    return f"{percentile(samples, 0.5):.1f} / {percentile(samples, 0.99):.1f} s"


@dataclass
class WorkerStage(Stage):
    """`--workers K`: K bot processes on one PostgreSQL database (the fleet), each with its own HTTP
    port; Slack's events are spread over them as a load balancer in front of them would."""

    workers: int = 2
    database_url: str = ""
    bots: list[BotProcess] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self, conversations: int, *, one_channel: bool) -> AsyncIterator[Stage]:
        assert isinstance(self.driver, SlackDriver), "workers: Slack over the Events API only"
        await self.driver.start(conversations, one_channel=one_channel)
        self.model.install()
        for index in range(self.workers):
            env = base_env(self.llm, self.database, free_port()) | self.driver.env()
            env["DATABASE_URL"] = self.database_url
            self.bots.append(BotProcess(env, self.run_folder, self.run_folder / f"bot-{index}.log"))
        self.driver.worker_ports = [bot.port for bot in self.bots]
        self.bot = self.bots[0]
        self.watch = Watch(self.turns, self.driver.texts, self.model, self.options.poll_s)
        try:
            for bot in self.bots:
                await bot.start()
            for bot in self.bots:
                await bot.ready()
            self.watch.start()
            yield self
        finally:
            await self.watch.stop()
            for bot in self.bots:
                await bot.kill()
            self.llm.responder = None
            await self.driver.stop()


def bot_pids(stage: Stage) -> list[int]:
    bots = stage.bots if isinstance(stage, WorkerStage) else [stage.bot]
    return [bot.process.pid for bot in bots if bot is not None and bot.process is not None]


async def run(
    platform: str,
    n: int,
    steady: float,
    options: Options,
    llm: FakeLLMServer,
    folder: Path,
    database_url: str = "",
    workers: int = 1,
) -> tuple[str, ...]:
    if database_url:
        stage: Stage = WorkerStage(
            platform,
            f"streams-{n}-x{workers}",
            options,
            llm,
            folder,
            workers=workers,
            database_url=database_url,
        )
    else:
        stage = Stage(platform, f"streams-{n}", options, llm, folder)
    async with stage.running(n, one_channel=False):
        pids = bot_pids(stage)
        driver = stage.driver
        turns = first_turns(stage, n)
        calls, limited = driver.reply_calls(), driver.rate_limited()
        cpu = sum(cpu_seconds(pid) for pid in pids)
        started = time.monotonic()
        if steady:
            sends = []
            for turn in turns:
                sends.append(asyncio.create_task(driver.send(turn)))
                await asyncio.sleep(1 / steady)
            await asyncio.gather(*sends)
        else:
            await asyncio.gather(*(driver.send(t) for t in turns))
        settle = await stage.settle(turns)
        used = sum(cpu_seconds(pid) for pid in pids) - cpu
        rss = max(peak_rss_mb(pid) for pid in pids)  # per process
        verdicts = stage.verdicts(turns)
        made, served = driver.reply_calls() - calls, driver.rate_limited() - limited
    first = [t.first_text_at - t.sent_at - options.ttft for t in turns if t.first_text_at and t.sent_at]
    final = [t.final_at - t.sent_at for t in turns if t.final_at and t.sent_at]
    exact = sum(v.exactly_once for v in verdicts)
    return (
        platform,
        (f"{n} at {steady:.0f}/s" if steady else f"{n} at once")
        + (f", {workers} workers" if workers > 1 else "")
        + (", PostgreSQL" if database_url else ""),
        ms(first),
        s(final),
        f"{100 * exact / n:.1f}%",
        str(served),
        f"{made / n:.1f}",
        f"{1000 * used / n:.1f} ms",
        f"{rss:.0f} MB",
        f"{time.monotonic() - started:.0f} s (settled in {settle:.0f} s)",
        load_average(),
        f"{statistics.mean(first) * 1000:.0f} ms" if first else "-",
    )


async def main(
    platforms: Sequence[str],
    sizes: Sequence[int],
    steady: float,
    options: Options,
    workers: int = 1,
    on_postgres: bool = False,
) -> None:
    print(f"load average at start: {load_average()}", flush=True)
    folder = options.keep or Path(tempfile.mkdtemp(prefix="bench-streams-"))
    llm = FakeLLMServer()
    await llm.start()
    postgres = PostgresServer() if workers > 1 or on_postgres else None
    if postgres is not None:
        await asyncio.to_thread(postgres.start)
    rows = []
    try:
        for platform in platforms:
            for n in sizes:
                database_url = await asyncio.to_thread(postgres.new_database) if postgres else ""
                try:
                    rows.append(await run(platform, n, steady, options, llm, folder, database_url, workers))
                except Exception as error:  # one run failing must not hide the others' numbers
                    print(f"{platform} N={n}: the run failed: {type(error).__name__}: {error}", flush=True)
                print(table("so far", HEADERS, rows[-1:]), "\n", flush=True)
    finally:
        await llm.stop()
        if postgres is not None:
            await asyncio.to_thread(postgres.stop)
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    title = (
        f"streams: {options.tokens} tokens at {options.rate:.0f}/s after {options.ttft:.1f} s, "
        "the bot as its own process"
    )
    print(table(title, HEADERS, rows))


HEADERS = (
    "platform",
    "conversations",
    "added latency to first text p50/p99",
    "event to final p50/p99",
    "final text exact",
    "429s",
    "calls/reply",
    "bot CPU/reply",
    "bot peak RSS",
    "run",
    "load average",
    "added latency mean",
)


def parse_args(
    argv: Sequence[str] | None = None,
) -> tuple[list[str], list[int], float, Options, int, bool]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--platform", default="slack,telegram,discord")
    parser.add_argument("--n", default="10,100", help="conversations (comma-separated sizes)")
    parser.add_argument("--steady", type=float, default=0.0, help="conversations per second (0: at once)")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--keep", type=Path)
    parser.add_argument(
        "--workers", type=int, default=1, help="bot processes on one PostgreSQL database (Slack only)"
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite (Slack only)")
    parser.add_argument("--telegram-webhook", action="store_true", help="Telegram in webhook mode")
    args = parser.parse_args(argv)
    platforms = [p.strip() for p in args.platform.split(",") if p.strip()]
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        parser.error(f"unknown platform: {', '.join(unknown)}")
    options = Options(
        tokens=max(args.tokens, 12),
        rate=args.rate,
        ttft=args.ttft,
        keep=args.keep,
        telegram_webhook=args.telegram_webhook,
    )
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
    if (args.workers > 1 or args.postgres) and platforms != ["slack"]:
        parser.error("--workers and --postgres: Slack only (--platform slack)")
    sizes = [int(n) for n in args.n.split(",")]
    return platforms, sizes, args.steady, options, max(args.workers, 1), args.postgres


if __name__ == "__main__":
    asyncio.run(main(*parse_args()))
