"""Benchmark: is every message answered once, in full? (issue 11). Prints numbers; asserts nothing.

What a user feels, end to end: the bot is its own process (`python -m bot run`, configured by
environment variables only, SQLite store), the fake platform and the fake LLM server (real SSE wire
format, the real anthropic SDK on the bot's side) run in this process, replies are of real length and
pace (default 60 tokens at 50 tokens/s after ~0.3 s), and N conversations run at once.

Scenarios, for each platform (slack: HTTP Events API; discord: gateway + REST; telegram: long polling):

1. crash: N conversations at once; the bot is SIGKILLed at a chosen moment and started again on the same
   database; once idle, each message is judged: answered exactly once with exactly the model's text,
   lost (no whole answer shown), duplicate (the whole answer shown twice), or shown once beside a stale
   part of an answer (words the killed process had streamed). The stored history is checked with the
   store API (every question followed by an assistant message, each question stored once).
   Kill moments: (a) right after the platform handed the events to the bot (Slack: every POST answered
   200; Discord: the gateway dispatched them, + 80 ms; Telegram: getUpdates returned them, + 80 ms);
   (b) mid-stream (the first words of every answer visible); (c) every answer stored but not shown (the
   fake holds each call that would show a whole reply until the bot is dead).
2. storm: N messages at once in one channel/chat while the fake answers every reply call (post, edit,
   stream, typing, status) 429 + Retry-After 1 s for the first 10 s.
3. faults: conversations x messages, each message sent once the previous one was answered, while 20% of
   the model's replies fail (half a 500 before any text, half cut mid-stream after some words).

Run: `python -m bench.delivery` (everything, a few minutes), or pick with `--scenario crash,storm,faults`,
`--platform slack,discord,telegram`, `--n` (conversations at once), `--moments a,b,c`; see `--help`.
Each run's bot log is kept under `--keep DIR` if given (else in a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import shutil
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.drivers import DiscordDriver, Driver, SlackDriver
from bench.harness import (
    Answer,
    BotProcess,
    Fault,
    History,
    Model,
    Turn,
    Verdict,
    Watch,
    answers,
    base_env,
    check_history,
    delivered_turns,
    judge,
    load_average,
    partial_with_note,
    question,
    seconds,
    table,
)
from tests.fakes.llm_server import FakeLLMServer
from tests.ports import free_port

PLATFORMS = ("slack", "discord", "telegram")
SCENARIOS = ("crash", "storm", "faults")
MOMENTS = {
    "a": "(a) platform handed over",
    "b": "(b) mid-stream",
    "c": "(c) stored, not shown",
}


@dataclass
class Options:
    tokens: int = 60
    rate: float = 50.0
    ttft: float = 0.3
    crash_n: int = 10
    moments: tuple[str, ...] = ("a", "b", "c")
    kill_after_s: float = 0.08  # (a) on Discord and Telegram: after the dispatch / getUpdates answer
    storm_n: int = 60
    storm_s: float = 10.0
    retry_after: float = 1.0
    fault_conversations: int = 20
    fault_messages: int = 5
    fault_rate: float = 0.2
    quiet_s: float = 1.5  # settled: this long without a platform call or model frame
    stall_s: float = 8.0  # ... or this long with some messages still unanswered (they are lost)
    # Long enough for Telegram's 20 messages a minute per group: 60 replies in one group need 3 minutes.
    settle_limit_s: float = 300.0
    poll_s: float = 0.02
    keep: Path | None = None
    telegram_webhook: bool = False  # Telegram in webhook mode (the fake posts 40 updates at a time)


def make_driver(platform: str, http_port: int, *, telegram_webhook: bool = False) -> Driver:
    if platform == "slack":
        return SlackDriver(http_port)
    if platform == "discord":
        return DiscordDriver()
    if platform == "telegram":
        from bench.telegram_driver import TelegramDriver

        return TelegramDriver(webhook_port=http_port if telegram_webhook else None)
    raise ValueError(f"unknown platform {platform!r}")


@dataclass
class Stage:
    """One scenario run on one platform: the fake, the bot process and its database, the watcher."""

    platform: str
    name: str
    options: Options
    llm: FakeLLMServer
    folder: Path
    fault: Fault = field(default_factory=Fault)

    def __post_init__(self) -> None:
        self.run_folder = self.folder / f"{self.platform}-{self.name}"
        self.run_folder.mkdir(parents=True, exist_ok=True)
        self.database = self.run_folder / "bot.db"
        self.log = self.run_folder / "bot.log"
        self.http_port = free_port()
        webhook = self.options.telegram_webhook
        self.driver = make_driver(self.platform, self.http_port, telegram_webhook=webhook)
        self.model = Model(self.llm, self.options.tokens, self.options.rate, self.options.ttft, self.fault)
        self.bot: BotProcess | None = None
        self.watch: Watch | None = None
        self.turns: list[Turn] = []
        self.delivered: set[str] = set()

    @contextlib.asynccontextmanager
    async def running(self, conversations: int, *, one_channel: bool) -> AsyncIterator[Stage]:
        await self.driver.start(conversations, one_channel=one_channel)
        self.model.install()
        env = base_env(self.llm, self.database, self.http_port) | self.driver.env()
        self.bot = BotProcess(env, self.run_folder, self.log)
        self.watch = Watch(self.turns, self.driver.texts, self.model, self.options.poll_s)
        try:
            await self.boot()
            self.watch.start()
            yield self
        finally:
            await self.watch.stop()
            await self.bot.kill()
            self.llm.responder = None
            await self.driver.stop()

    async def boot(self) -> float:
        assert self.bot is not None
        started = time.monotonic()
        await self.bot.start()
        await self.bot.ready()
        await self.driver.connected()
        return time.monotonic() - started

    def tick(self) -> None:
        assert self.watch is not None
        self.watch.tick()
        pending = [t.qid for t in self.turns if t.qid not in self.delivered]
        self.delivered |= delivered_turns(self.database, pending)

    def done(self, turn: Turn) -> bool:
        return turn.final_at is not None or turn.qid in self.delivered

    def quiet_for(self) -> float:
        llm = 0.0 if self.llm.streaming else time.monotonic() - self.llm.last_activity
        return min(self.driver.idle_for(), llm)

    async def settle(self, turns: Sequence[Turn]) -> float:
        """Wait until every turn is answered and nothing moves, or nothing has moved for `stall_s`;
        returns how long it took."""
        options = self.options
        started = time.monotonic()
        while time.monotonic() - started < options.settle_limit_s:
            self.tick()
            quiet = self.quiet_for()
            if quiet >= options.stall_s or (all(self.done(t) for t in turns) and quiet >= options.quiet_s):
                break
            await asyncio.sleep(0.05)
        self.tick()
        return time.monotonic() - started

    async def until(self, condition: Callable[[], bool], limit_s: float, what: str) -> bool:
        started = time.monotonic()
        while not condition():
            if time.monotonic() - started > limit_s:
                print(f"  ({self.platform} {self.name}: {what} not reached within {limit_s:.0f}s)")
                return False
            self.tick()
            await asyncio.sleep(0.005)
        return True

    def answers(self, turns: Sequence[Turn]) -> list[Answer | None]:
        shown = self.driver.texts()
        grouped = {key: answers(items) for key, items in shown.items()}
        return [grouped.get(t.key, {}).get(t.qid) for t in turns]

    def verdicts(self, turns: Sequence[Turn]) -> list[Verdict]:
        return [judge(self.model.expected(t.qid), a) for t, a in zip(turns, self.answers(turns), strict=True)]

    async def history(self, turns: Sequence[Turn]) -> History:
        assert self.bot is not None
        await self.bot.stop()
        return await check_history(self.database, turns)


def first_turns(stage: Stage, count: int) -> list[Turn]:
    turns = [Turn(c, 0, *question(c, 0)) for c in range(count)]
    for turn in turns:
        stage.driver.conversation(turn)
    stage.turns.extend(turns)
    return turns


def details(stage: Stage, turns: Sequence[Turn], verdicts: Sequence[Verdict], limit: int = 6) -> list[str]:
    """A few lines on messages that were not answered exactly once: what the user saw."""
    lines = []
    for turn, verdict, answer in zip(turns, verdicts, stage.answers(turns), strict=True):
        if verdict.exactly_once:
            continue
        shown = [*answer.runs, *answer.notes] if answer is not None else []
        summary = " | ".join(_short(t) for t in shown) or "(no message)"
        lines.append(f"  {turn.qid}: {_kind(verdict)}: {summary}")
    return lines[:limit] + ([f"  ... and {len(lines) - limit} more"] if len(lines) > limit else [])


def _short(text: str) -> str:
    words = text.split()
    if len(words) <= 8:
        return repr(text)
    return repr(f"{' '.join(words[:3])} … {' '.join(words[-4:])}") + f" ({len(words)} words)"


def _kind(verdict: Verdict) -> str:
    if verdict.lost:
        return "no whole answer"
    if verdict.duplicate:
        return "duplicate"
    if verdict.partial:
        return "once + stale part"
    return "once + note"


# --- 1. crash windows -----------------------------------------------------------------------------------


@dataclass
class CrashRow:
    moment: str
    verdicts: list[Verdict]
    history: History
    before_kill: int
    recovery: list[float]
    stored_at_kill: int
    restart_s: float
    notes: list[str]
    extra: str = ""


async def crash(platform: str, moment: str, options: Options, llm: FakeLLMServer, folder: Path) -> CrashRow:
    stage = Stage(platform, f"crash-{moment}", options, llm, folder)
    n = options.crash_n
    async with stage.running(n, one_channel=False):
        driver = stage.driver
        turns = first_turns(stage, n)
        if moment == "c":
            driver.hold_finals(True)
        sends = asyncio.gather(*(driver.send(t) for t in turns))
        if moment == "a":
            await stage.until(lambda: driver.delivered(turns), 30, "delivery")
            if platform != "slack":
                await asyncio.sleep(options.kill_after_s)
        elif moment == "b":
            await stage.until(lambda: all(t.first_text_at for t in turns), 30, "first text everywhere")
        else:
            await stage.until(lambda: driver.held() >= n, 30, "every final call held")
        assert stage.bot is not None
        await stage.bot.kill()
        killed = time.monotonic()
        stored = _stored_turns(stage)
        await sends
        driver.hold_finals(False)
        driver.release()
        stage.tick()
        before = sum(1 for t in turns if t.final_at is not None and t.final_at <= killed)
        restart_s = await stage.boot()
        await driver.after_restart()
        await stage.settle(turns)
        verdicts = stage.verdicts(turns)
        recovery = [t.final_at - killed for t in turns if t.final_at is not None and t.final_at > killed]
        extra = _spinners(driver)
        notes = details(stage, turns, verdicts)
        history = await stage.history(turns)
    return CrashRow(MOMENTS[moment], verdicts, history, before, recovery, stored, restart_s, notes, extra)


def _stored_turns(stage: Stage) -> int:
    """Turns in the store when the bot died; a copy of the database as it was is kept next to the log."""
    with contextlib.closing(sqlite3.connect(f"file:{stage.database}?mode=ro", uri=True)) as conn:
        if stage.options.keep is not None:
            with contextlib.closing(sqlite3.connect(stage.run_folder / "at-kill.db")) as copy:
                conn.backup(copy)
        return int(conn.execute("SELECT count(*) FROM turns").fetchone()[0])


def _spinners(driver: Driver) -> str:
    count = getattr(driver, "spinners", None)
    return f"{count()} thinking… left" if callable(count) else ""


def crash_table(platform: str, options: Options, rows: Sequence[CrashRow]) -> str:
    body = []
    for row in rows:
        v = row.verdicts
        body.append(
            (
                row.moment,
                f"{row.stored_at_kill}/{len(v)}",
                f"{sum(x.exactly_once for x in v)}/{len(v)}",
                sum(x.lost for x in v),
                sum(x.duplicate for x in v),
                sum(1 for x in v if x.full == 1 and x.partial),
                sum(1 for x in v if x.full == 1 and not x.exact and not x.partial),
                f"{row.history.valid}/{row.history.conversations}",
                row.before_kill,
                f"{row.restart_s:.1f} s",
                seconds(row.recovery),
                row.extra,
            )
        )
    title = (
        f"crash windows: {platform}, N={options.crash_n} conversations at once, SIGKILL + restart on the "
        f"same SQLite database ({options.tokens} tokens at {options.rate:.0f}/s, the first after "
        f"{options.ttft:.1f} s)"
    )
    headers = (
        "kill moment",
        "stored at kill",
        "exactly once",
        "lost",
        "duplicate",
        "once + stale part",
        "once + note",
        "history valid",
        "shown before kill",
        "restart to ready",
        "kill to final p50/max",
        "",
    )
    out = [table(title, headers, body)]
    for row in rows:
        if row.notes or row.history.problems:
            out.append(f"{row.moment}:")
            out += row.notes
            out += [f"  history: {p}" for p in row.history.problems[:4]]
            out.append(f"  turns in the store: {row.history.statuses}")
    return "\n".join(out)


# --- 2. 429 storm -----------------------------------------------------------------------------------------


async def storm(platform: str, options: Options, llm: FakeLLMServer, folder: Path) -> str:
    stage = Stage(platform, "storm", options, llm, folder)
    n = options.storm_n
    async with stage.running(n, one_channel=True):
        driver = stage.driver
        turns = first_turns(stage, n)
        calls, limited = driver.reply_calls(), driver.rate_limited()
        driver.storm(options.storm_s, options.retry_after)
        started = time.monotonic()
        await asyncio.gather(*(driver.send(t) for t in turns))
        settle = await stage.settle(turns)
        verdicts = stage.verdicts(turns)
        served = driver.rate_limited() - limited
        made = driver.reply_calls() - calls
        notes = details(stage, turns, verdicts)
        history = await stage.history(turns)
    finals = [t.final_at - t.sent_at for t in turns if t.final_at is not None and t.sent_at is not None]
    exact = sum(v.exactly_once for v in verdicts)
    row = (
        f"{exact}/{n} ({100 * exact / n:.0f}%)",
        sum(v.failure_line for v in verdicts),
        sum(v.lost for v in verdicts),
        sum(v.duplicate for v in verdicts),
        seconds(finals),
        served,
        f"{made / n:.1f}",
        f"{history.valid}/{history.conversations}",
        f"{time.monotonic() - started:.0f} s (settled in {settle:.0f} s)",
    )
    title = (
        f"429 storm: {platform}, N={n} at once in one channel/chat; every reply call answered 429 "
        f"(Retry-After {options.retry_after:.0f} s) for the first {options.storm_s:.0f} s"
    )
    headers = (
        "final text exact",
        "false failure lines",
        "lost",
        "duplicate",
        "event to final p50/max",
        "429s served",
        "platform calls/reply",
        "history valid",
        "run",
    )
    return "\n".join(
        [table(title, headers, [row]), *notes, *(f"  history: {p}" for p in history.problems[:4])]
    )


# --- 3. provider faults -----------------------------------------------------------------------------------


async def faults(platform: str, options: Options, llm: FakeLLMServer, folder: Path) -> str:
    fault = Fault(options.fault_rate)
    stage = Stage(platform, "faults", options, llm, folder, fault=fault)
    conversations, messages = options.fault_conversations, options.fault_messages
    async with stage.running(conversations, one_channel=False):
        driver = stage.driver

        async def converse(index: int) -> None:
            first: Turn | None = None
            for m in range(messages):
                turn = Turn(index, m, *question(index, m))
                stage.turns.append(turn)
                if first is None:
                    driver.conversation(turn)
                    first = turn
                else:
                    driver.follow_up(turn, first)
                await driver.send(turn)
                await stage.until(functools.partial(stage.done, turn), 90, f"answer to {turn.qid}")

        started = time.monotonic()
        await asyncio.gather(*(converse(c) for c in range(conversations)))
        await stage.settle(stage.turns)
        turns = list(stage.turns)
        verdicts = stage.verdicts(turns)
        shown = stage.answers(turns)
        calls = stage.model.calls()
        notes = details(stage, turns, verdicts)
        history = await stage.history(turns)
    total = len(turns)
    full = sum(v.exactly_once for v in verdicts)
    with_note = sum(1 for a, v in zip(shown, verdicts, strict=True) if v.lost and partial_with_note(a))
    note_only = sum(1 for v in verdicts if v.lost and v.note_only)
    finals = [t.final_at - t.sent_at for t in turns if t.final_at is not None and t.sent_at is not None]
    injected = stage.model.injected
    row = (
        f"{full}/{total} ({100 * full / total:.0f}%)",
        f"{with_note} ({100 * with_note / total:.0f}%)",
        note_only,
        sum(v.failure_line for v in verdicts),
        sum(v.lost for v in verdicts) - with_note - note_only,
        sum(v.duplicate for v in verdicts),
        sum(1 for v in verdicts if v.full == 1 and v.partial),
        sum(v.split for v in verdicts),
        f"{calls / total:.2f}",
        f"{injected['500']} x 500, {injected['cut']} cut",
        seconds(finals),
        f"{history.valid}/{history.conversations}",
        f"{time.monotonic() - started:.0f} s",
    )
    title = (
        f"provider faults: {platform}, {conversations} conversations x {messages} messages = {total} turns; "
        f"{100 * options.fault_rate:.0f}% of model replies fail (half a 500 before any text, half cut "
        "mid-stream)"
    )
    headers = (
        "answered in full",
        "partial + note",
        "note, no text",
        "false failure lines",
        "lost",
        "duplicate",
        "once + stale part",
        "split over msgs",
        "LLM calls/turn",
        "injected",
        "event to final p50/max",
        "history valid",
        "run",
    )
    return "\n".join(
        [table(title, headers, [row]), *notes, *(f"  history: {p}" for p in history.problems[:4])]
    )


# --- the run ----------------------------------------------------------------------------------------------


async def run_platform(
    platform: str, scenarios: Sequence[str], options: Options, llm: FakeLLMServer, folder: Path
) -> None:
    if "crash" in scenarios:
        rows = []
        for moment in options.moments:
            rows.append(await crash(platform, moment, options, llm, folder))
        print(crash_table(platform, options, rows), "\n", flush=True)
    if "storm" in scenarios:
        print(await storm(platform, options, llm, folder), "\n", flush=True)
    if "faults" in scenarios:
        print(await faults(platform, options, llm, folder), "\n", flush=True)


async def main(platforms: Sequence[str], scenarios: Sequence[str], options: Options) -> None:
    started = time.monotonic()
    print(f"load average at start: {load_average()}", flush=True)
    folder = options.keep or Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    llm = FakeLLMServer()
    await llm.start()
    try:
        for platform in platforms:
            try:
                await run_platform(platform, scenarios, options, llm, folder)
            except Exception as error:  # one platform failing must not hide the others' numbers
                print(f"{platform}: the run failed: {type(error).__name__}: {error}\n", flush=True)
    finally:
        await llm.stop()
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at the end: {load_average()}")
    print(
        f"total run time: {time.monotonic() - started:.0f} s"
        + (f"; logs in {folder}" if options.keep else "")
    )


def _names(value: str, allowed: Sequence[str]) -> list[str]:
    names = list(allowed) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return names


def parse_args(argv: Sequence[str] | None = None) -> tuple[list[str], list[str], Options]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="all", help="crash, storm, faults (comma-separated) or all")
    parser.add_argument("--platform", default="all", help="slack, discord, telegram (comma-separated) or all")
    parser.add_argument(
        "--n", type=int, help="conversations at once (default: crash 10, storm 60, faults 20)"
    )
    parser.add_argument("--moments", default="a,b,c", help="crash kill moments: a, b, c")
    parser.add_argument("--tokens", type=int, default=60, help="words per model reply")
    parser.add_argument("--rate", type=float, default=50.0, help="model tokens per second")
    parser.add_argument("--ttft", type=float, default=0.3, help="seconds to the model's first token")
    parser.add_argument("--storm-seconds", type=float, default=10.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--messages", type=int, default=5, help="faults: messages per conversation")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--keep", type=Path, help="keep each run's database and bot log in this folder")
    args = parser.parse_args(argv)
    options = Options(
        tokens=max(args.tokens, 12),
        rate=args.rate,
        ttft=args.ttft,
        moments=tuple(_names(args.moments, tuple(MOMENTS))),
        storm_s=args.storm_seconds,
        retry_after=args.retry_after,
        fault_messages=args.messages,
        fault_rate=args.fault_rate,
        keep=args.keep,
    )
    if args.n is not None:
        options.crash_n = options.storm_n = options.fault_conversations = args.n
    if options.keep is not None:
        options.keep.mkdir(parents=True, exist_ok=True)
    return _names(args.platform, PLATFORMS), _names(args.scenario, SCENARIOS), options


if __name__ == "__main__":
    chosen_platforms, chosen_scenarios, chosen = parse_args()
    asyncio.run(main(chosen_platforms, chosen_scenarios, chosen))
