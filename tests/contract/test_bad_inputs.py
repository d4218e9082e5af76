"""The bad-input corpus (tests/data/bad_inputs.json) replayed on Slack, Telegram, Discord and the console.

One bot per platform for the whole corpus: the real adapter and platform library against the platform's
fake server (the console in-process), the real core, the fake LLM. Each case is sent as that platform
sends it; then the case's expectation is checked (answered with the normalised text / a clear refusal /
ignored), an ordinary message is answered, the adapter is still connected on the same connection (no
restart, no reconnect), nothing was logged at ERROR, and every stored turn is still there, unchanged,
answered and delivered. A last test per platform checks the same over the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import aiosqlite
import pytest
import pytest_asyncio

from adapters.console.adapter import ConsoleAdapter
from adapters.discord.adapter import DiscordAdapter
from adapters.telegram.adapter import TelegramAdapter
from bot.app import Core
from bot.config import Settings, load_settings
from core.storage import sqlite_path_from_url
from tests.contract import drivers
from tests.corekit import eventually
from tests.discordkit import running_bot as running_discord
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.discord_wire import snowflake
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.fakes.llm_wire import last_user_text_anthropic
from tests.fakes.slack_server import ALICE, FakeSlack, mention
from tests.fakes.telegram_server import FakeTelegram
from tests.telegramkit import running_bot as running_telegram

pytestmark = pytest.mark.asyncio(loop_scope="module")

CORPUS = Path(__file__).parents[1] / "data" / "bad_inputs.json"
PLATFORMS = ("slack", "telegram", "discord", "console")
SLACK_DM = "D0ALICE"
Expect = Literal["answered", "refused", "ignored"]


# --- the corpus -------------------------------------------------------------------------------------


def joined(value: str | list[Any]) -> str:
    """A text from the corpus: a string, or a list of parts (a string, or [string, times])."""
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else str(part[0]) * int(part[1]) for part in value)


def option(value: Any) -> Any:
    """A slash command option: a text as `joined`, anything else (a number, a boolean) as it is."""
    return joined(value) if isinstance(value, str | list) else value


def without_nulls(payload: dict[str, Any]) -> dict[str, Any]:
    """In a corpus payload, null removes the field."""
    return {key: value for key, value in payload.items() if value is not None}


PerPlatform = str | dict[str, str] | None  # one value, or {platform: value, "default": value}


def for_platform(value: PerPlatform, platform: str) -> str | None:
    if isinstance(value, dict):
        return value.get(platform, value.get("default"))
    return value


@dataclass(frozen=True)
class Case:
    id: str
    expect: Expect
    text: str | None = None  # a user message, sent the platform's way
    raw: dict[str, Any] = field(default_factory=dict)  # or a payload for one platform
    model_sees: PerPlatform = None  # default: the text
    says: PerPlatform = None
    never_shows: PerPlatform = None
    shown_under: int | None = None
    platforms: tuple[str, ...] = PLATFORMS
    xfail: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def of(entry: dict[str, Any]) -> Case:
        raw = entry.get("raw") or {}

        def per_platform(value: Any) -> PerPlatform:
            if isinstance(value, dict):
                return {key: joined(text) for key, text in value.items()}
            return None if value is None else joined(value)

        return Case(
            id=entry["id"],
            expect=entry["expect"],
            text=joined(entry["text"]) if "text" in entry else None,
            raw=raw,
            model_sees=per_platform(entry.get("model_sees")),
            says=per_platform(entry.get("says")),
            never_shows=per_platform(entry.get("never_shows")),
            shown_under=entry.get("shown_under"),
            platforms=(raw["platform"],) if raw else tuple(entry.get("platforms", PLATFORMS)),
            xfail=entry.get("xfail", {}),
        )

    def model_text(self, platform: str) -> str:
        return for_platform(self.model_sees, platform) or self.text or ""


def load_corpus() -> tuple[dict[str, Any], list[Case]]:
    data = json.loads(CORPUS.read_text(encoding="utf-8"))
    return data.get("settings", {}), [Case.of(entry) for entry in data["cases"]]


CORPUS_SETTINGS, CASES = load_corpus()


# --- one bot per platform ---------------------------------------------------------------------------


class Rig(Protocol):
    """One platform's bot, as a user and an onlooker see it."""

    @property
    def platform(self) -> str: ...

    @property
    def core(self) -> Core: ...

    async def say(self, text: str) -> None:
        """A user writes an ordinary message to the bot."""
        ...

    async def send_raw(self, raw: dict[str, Any]) -> None:
        """A payload of this platform's own (the corpus's `raw`)."""
        ...

    def shown(self) -> dict[str, str]:
        """Everything the bot shows anyone, public or private, by a key that never changes."""
        ...

    def connected(self) -> bool:
        """The adapter is up, on the connection it made at the start (no restart, no reconnect)."""
        ...


@dataclass
class SlackRig:
    driver: drivers.SlackDriver
    core: Core
    fake: FakeSlack
    connections: int  # socket connections made by the start
    platform: str = "slack"

    async def say(self, text: str) -> None:
        await self.driver.ask(text)

    async def send_raw(self, raw: dict[str, Any]) -> None:
        """`event`: fields over a DM's message event (null removes one; `mention`: a channel mention
        instead); `command`: the text of the slash command; `frame`: a socket frame as it is."""
        if "event" in raw:
            channel = drivers.SLACK_CHANNEL if raw.get("mention") else SLACK_DM
            event = without_nulls(self.fake.user_message(channel, "") | raw["event"])
            await self.fake.push_event(mention(event) if raw.get("mention") else event)
        elif "command" in raw:
            await self.fake.push_command(joined(raw["command"]))
        else:
            frame = raw["frame"]
            assert self.fake._ws is not None
            await self.fake._ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    def shown(self) -> dict[str, str]:
        fake = self.fake
        found = {f"message:{key}": m.text for key, m in fake.messages.items() if m.bot}
        found |= {f"ephemeral:{i}": str(e.get("text")) for i, e in enumerate(fake.ephemerals)}
        return found | {f"response:{i}": str(r.get("text")) for i, r in enumerate(fake.responses)}

    def connected(self) -> bool:
        return self.driver.adapter.ready() and self.fake.connections == self.connections


@dataclass
class TelegramRig:
    driver: drivers.TelegramDriver
    core: Core
    fake: FakeTelegram
    adapter: TelegramAdapter
    starts: int  # getMe calls: one per adapter start
    platform: str = "telegram"

    async def say(self, text: str) -> None:
        await self.driver.ask(text)

    async def send_raw(self, raw: dict[str, Any]) -> None:
        """`update`: a whole update as it is; `message`: fields over a private chat's message (null
        removes one), sent as the update's `as` (default "message")."""
        if "update" in raw:
            self.fake.push_raw(raw["update"])
            return
        update, _ = self.fake.message_update(self.fake.private_chat(drivers.TELEGRAM_CHAT), "")
        message = without_nulls(update.pop("message") | raw["message"])
        self.fake.push(update | {raw.get("as", "message"): message})

    def shown(self) -> dict[str, str]:
        return {str(m.message_id): m.text for m in self.fake.bot_messages(drivers.TELEGRAM_CHAT)}

    def connected(self) -> bool:
        return self.adapter.ready() and len(self.fake.calls_to("getMe")) == self.starts


@dataclass
class DiscordRig:
    driver: drivers.DiscordDriver
    core: Core
    fake: FakeDiscord
    adapter: DiscordAdapter
    session: Any  # the gateway session of the start: a reconnect or a new IDENTIFY changes it
    platform: str = "discord"

    async def say(self, text: str) -> None:
        await self.driver.ask(text)

    async def send_raw(self, raw: dict[str, Any]) -> None:
        """`dispatch` + `data`: a gateway event as it is ($new, $channel, $guild: a fresh id, the bot's
        channel, its guild); `slash` + `options` (+ `registered`): an application command."""
        if "dispatch" in raw:
            await self.fake.dispatch(raw["dispatch"], self._placed(raw["data"]))
            return
        options = {name: option(value) for name, value in raw.get("options", {}).items()}
        await self.fake.slash(raw["slash"], options, registered=raw.get("registered", True))

    def _placed(self, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: self._placed(value) for key, value in data.items()}
        places = {"$new": snowflake(), "$channel": self.fake.channel_id, "$guild": self.fake.guild_id}
        return str(places[data]) if isinstance(data, str) and data in places else data

    def shown(self) -> dict[str, str]:
        bot = str(self.fake.bot_id)
        return {
            str(key): f"{m['content']} {json.dumps(m.get('embeds') or '', ensure_ascii=False)}"
            for key, m in self.fake.messages.items()
            if m["author"]["id"] == bot
        }

    def connected(self) -> bool:
        same = self.fake.session is self.session and len(self.fake.sessions) == 1
        return same and not self.adapter.client.is_closed()


@dataclass
class ConsoleRig:
    driver: drivers.ConsoleDriver
    core: Core
    platform: str = "console"

    async def say(self, text: str) -> None:
        await self.driver.ask(text)

    async def send_raw(self, raw: dict[str, Any]) -> None:
        """`stdin`: bytes (one character per byte) read as `bot chat` reads them, in a chat over the
        same conversation that ends with the input."""
        stdin = io.TextIOWrapper(io.BytesIO(raw["stdin"].encode("latin-1")), encoding="utf-8")
        out, err = self.driver.stdout, self.driver.stderr
        user = self.driver.adapter.user
        chat = ConsoleAdapter(
            self.core.router, stdin=stdin, stdout=out, stderr=err, interactive=False, user=user
        )
        await chat.run()

    def shown(self) -> dict[str, str]:
        """What was printed, a line each (the streams only grow)."""
        out, err = self.driver.stdout.getvalue(), self.driver.stderr.getvalue()
        lines = {f"out:{i}": line for i, line in enumerate(out.splitlines())}
        return lines | {f"err:{i}": line for i, line in enumerate(err.splitlines())}

    def connected(self) -> bool:
        return "Traceback" not in self.driver.stderr.getvalue()  # no connection; no crash either


def new_since(rig: Rig, before: dict[str, str]) -> list[str]:
    """What the bot showed since `before` (a `shown()` snapshot)."""
    return [text for key, text in rig.shown().items() if key not in before]


# --- the run: fixtures ------------------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Every record at ERROR or above while the corpus runs: a crash anywhere shows up here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Run:
    """One platform's run of the corpus. A case that leaves the adapter down (a known failure, marked
    xfail) gets a fresh bot for the cases after it, as the supervisor in `bot run` would; the restart
    is noted, so the last test can tell it from one no case expected."""

    platform: str
    llm: FakeLLMServer
    errors: ErrorLog
    directory: Callable[[], Path]  # a fresh one for each bot
    rig: Rig = field(init=False)
    restarted_after: list[str] = field(default_factory=list)
    errors_seen: int = 0  # records already looked at by a case
    asked_at_start: int = 0  # model requests before this bot started
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def start(self) -> None:
        self.asked_at_start = len(self.llm.requests)
        self.rig = await self._stack.enter_async_context(RIGS[self.platform](self.llm, self.directory()))

    async def stop(self) -> None:
        await self._stack.aclose()

    async def restart_after(self, case_id: str) -> None:
        self.restarted_after.append(case_id)
        await self.stop()
        await self.start()


@contextlib.contextmanager
def isolated_environment() -> Iterator[None]:
    """As tests/conftest.py does per test, for the whole module: no developer settings leak in."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("BOT_", "ALLOWED_", "ADMIN_", "ANTHROPIC_", "OPENAI_", "DATABASE_")):
                patch.delenv(name)
        yield


def corpus_settings(llm: FakeLLMServer, directory: Path, admin: str) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": "sk-ant-test-secret-key",
        "anthropic_base_url": llm.anthropic_base_url,
        "openai_api_key": "sk-openai-test-secret-key",
        "openai_base_url": llm.openai_base_url,
        "database_url": f"sqlite:///{directory / 'bot.db'}",
        "bot_model": "anthropic:claude-sonnet-5-5",
        "bot_retry_attempts": 2,
        "admin_users": admin,  # the corpus's user is an admin: /report checks its date
        **CORPUS_SETTINGS,
    }
    return load_settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def slack_rig(llm: FakeLLMServer, directory: Path) -> AsyncIterator[Rig]:
    async with drivers.slack(corpus_settings(llm, directory, f"slack:{ALICE}")) as driver:
        yield SlackRig(driver, driver.core, driver.fake, driver.fake.connections)


@contextlib.asynccontextmanager
async def telegram_rig(llm: FakeLLMServer, directory: Path) -> AsyncIterator[Rig]:
    fake = FakeTelegram()
    await fake.start()
    fake.private_chat(drivers.TELEGRAM_CHAT)  # known before the start: the admin's command menu is set
    settings = corpus_settings(llm, directory, f"telegram:{drivers.TELEGRAM_CHAT}")
    try:
        async with running_telegram(fake, settings) as bot:
            driver = drivers.TelegramDriver(fake, bot.core, bot.adapter.surface_for)
            yield TelegramRig(driver, bot.core, fake, bot.adapter, len(fake.calls_to("getMe")))
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def discord_rig(llm: FakeLLMServer, directory: Path) -> AsyncIterator[Rig]:
    fake = FakeDiscord()
    # Discord's per-channel limit (5 per 5 s) would pace the corpus's many mentions in one channel: this
    # run is about bad input, not rate limits (tests/test_discord_delivery.py has those).
    fake.limiter.limits = {kind: (1000, 1.0) for kind in fake.limiter.limits}
    await fake.start()
    settings = corpus_settings(llm, directory, f"discord:{fake.alice}")
    try:
        async with running_discord(settings, fake) as bot:
            driver = drivers.DiscordDriver(fake, bot.core, bot.adapter.surface_for)
            yield DiscordRig(driver, bot.core, fake, bot.adapter, fake.session)
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def console_rig(llm: FakeLLMServer, directory: Path) -> AsyncIterator[Rig]:
    async with drivers.console(corpus_settings(llm, directory, "console:alice")) as driver:
        yield ConsoleRig(driver, driver.core)


RIGS: dict[str, Callable[[FakeLLMServer, Path], contextlib.AbstractAsyncContextManager[Rig]]] = {
    "slack": slack_rig,
    "telegram": telegram_rig,
    "discord": discord_rig,
    "console": console_rig,
}


def one_chunk_echo(provider: str, body: Any) -> Reply:
    """The fake's echo in one piece: the answer is shown at once, not paced over the platform's edit
    interval (Discord's is at least 0.2 s) twice per case."""
    return Reply.text(f"echo: {last_user_text_anthropic(body)}", chunks=1)


@pytest_asyncio.fixture(scope="class", loop_scope="module")
async def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    """One bot for the platform of the test class, for all of its cases."""
    platform = str(request.cls.platform)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    llm = FakeLLMServer()
    llm.responder = one_chunk_echo
    await llm.start()
    run = Run(platform, llm, errors, lambda: tmp_path_factory.mktemp(f"corpus-{platform}"))
    try:
        with isolated_environment():
            await run.start()
            try:
                yield run
            finally:
                await run.stop()
    finally:
        await llm.stop()
        logging.getLogger().removeHandler(errors)


# --- the run: checks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTurn:
    id: int
    text: str
    status: str
    answer: str | None
    delivered: bool


async def stored_turns(core: Core) -> list[StoredTurn]:
    path = sqlite_path_from_url(core.settings.database_url)
    query = "SELECT id, text, status, answer, delivered_at IS NOT NULL FROM turns ORDER BY id"
    async with aiosqlite.connect(path) as db, db.execute(query) as cursor:
        rows = await cursor.fetchall()
    return [StoredTurn(int(r[0]), str(r[1]), str(r[2]), r[3], bool(r[4])) for r in rows]


GUARD_S = 5.0  # stops a hung case (a message on the fakes takes milliseconds); no assert on speed


async def until(rig: Rig, holds: Callable[[], Awaitable[bool]], what: Callable[[], str]) -> None:
    """Poll `holds` until it is true; fail at once (saying `what` was awaited) when the adapter stops."""
    for _ in range(int(GUARD_S / 0.02)):
        if await holds():
            return
        if not rig.connected():
            raise AssertionError(f"the adapter stopped while waiting for {what()}")
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {GUARD_S:g}s: {what()}")


async def until_delivered(rig: Rig, count: int) -> None:
    """`count` turns are stored and every one of them is delivered."""

    async def holds() -> bool:
        turns = await stored_turns(rig.core)
        return len(turns) >= count and all(t.delivered for t in turns)

    await until(rig, holds, lambda: f"{count} delivered turns")


async def until_shown(rig: Rig, before: dict[str, str], fragment: str) -> None:
    async def holds() -> bool:
        return any(fragment in text for text in new_since(rig, before))

    await until(rig, holds, lambda: f"{fragment!r} to be shown; shown: {new_since(rig, before)}")


def intact(before: list[StoredTurn], after: list[StoredTurn]) -> None:
    assert after[: len(before)] == before, "a stored turn changed or was lost"
    broken = [t for t in after if t.status != "done" or not t.delivered]
    assert not broken, f"turns not answered and delivered: {broken}"


async def check_case(run: Run, case: Case) -> None:
    """Send the case and, at once, an ordinary message (the next one must never wait on a bad one, and
    the run stays quick); once both are done, check what came of each."""
    rig = run.rig
    turns_before = await stored_turns(rig.core)
    shown_before = rig.shown()
    asked, errors = len(run.llm.requests), len(run.errors.records)
    ping = f"ping after {case.id}"
    if case.raw:
        await rig.send_raw(case.raw)
    else:
        await rig.say(case.text or "")
    await rig.say(ping)
    says = for_platform(case.says, rig.platform)
    if says is not None:
        await until_shown(rig, shown_before, says)
    await until_shown(rig, shown_before, f"echo: {ping}")
    await until_delivered(rig, len(turns_before) + (2 if case.expect == "answered" else 1))
    await rig.core.router.wait_idle()

    turns = await stored_turns(rig.core)
    intact(turns_before, turns)
    check_outcome(
        rig.platform,
        case,
        [t for t in turns[len(turns_before) :] if t.text != ping],
        [r.body for r in run.llm.requests[asked:] if last_user_text_anthropic(r.body) != ping],
        [text for text in new_since(rig, shown_before) if ping not in text],
    )
    logged = [r.getMessage() for r in run.errors.records[errors:]]
    assert logged == [], f"logged at ERROR: {logged}"
    assert rig.connected(), "the adapter disconnected or restarted"


def check_outcome(
    platform: str, case: Case, turns: list[StoredTurn], requests: list[Any], shown: list[str]
) -> None:
    """What came of the case alone (its turns, model requests and what was shown; not the ping's)."""
    if case.expect == "answered":
        expected = case.model_text(platform)
        assert len(turns) == 1, f"stored as {len(turns)} turns"
        assert len(requests) == 1, f"{len(requests)} model requests for one message"
        # Leading and trailing whitespace is the platform's business (Slack trims, a console line not).
        seen = last_user_text_anthropic(requests[0])
        assert seen.strip() == expected.strip(), "the model got other text"
        assert turns[0].text.strip() == expected.strip(), "another text was stored"
        assert turns[0].answer == f"echo: {seen}", "the model's answer was not stored as it came"
        assert any(text.strip() for text in shown), "no answer was shown"
    else:
        assert requests == [], "a refused or ignored message reached the model"
        assert turns == [], "a refused or ignored message was stored as a turn"
    if case.expect == "ignored":
        assert shown == [], f"an ignored message got a reply: {shown}"
    never = for_platform(case.never_shows, platform)
    if never is not None:
        assert not any(never in text for text in shown), f"shown {never!r}: {shown}"
    if case.shown_under is not None:
        assert sum(len(text) for text in shown) < case.shown_under, f"too much shown: {shown}"


async def check_next_message_is_answered(run: Run, after: str) -> None:
    rig = run.rig
    turns = await stored_turns(rig.core)
    before = rig.shown()
    ping = f"ping after {after}"
    await rig.say(ping)
    await until_shown(rig, before, f"echo: {ping}")
    await until_delivered(rig, len(turns) + 1)
    await rig.core.router.wait_idle()


# --- the tests: one class per platform, one test per case -----------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each platform's class runs the cases meant for it; a known failure is a strict xfail."""
    if "case" not in metafunc.fixturenames or metafunc.cls is None:
        return
    platform = metafunc.cls.platform
    params = [
        pytest.param(case, id=case.id, marks=[pytest.mark.xfail(reason=case.xfail[platform], strict=True)])
        if platform in case.xfail
        else pytest.param(case, id=case.id)
        for case in CASES
        if platform in case.platforms
    ]
    metafunc.parametrize("case", params)


class Corpus:
    platform: ClassVar[str]

    async def test_case(self, run: Run, case: Case) -> None:
        try:
            await check_case(run, case)
        finally:
            run.errors_seen = len(run.errors.records)
            if not run.rig.connected():
                await run.restart_after(case.id)

    async def test_still_serving_after_the_corpus(self, run: Run) -> None:
        """Over the whole run: no restart but after a known failure, the bot on its first connection,
        nothing at ERROR between the cases, every turn answered and delivered, one model call per turn
        (nothing retried or sent twice)."""
        known = {case.id for case in CASES if self.platform in case.xfail}
        assert [case_id for case_id in run.restarted_after if case_id not in known] == []
        rig = run.rig
        await check_next_message_is_answered(run, "the corpus")
        assert rig.connected(), "the adapter disconnected or restarted"
        if isinstance(rig, DiscordRig):  # discord.py calls itself ready once late guilds had their 2 s
            await eventually(rig.adapter.ready, guard_s=15)
        turns = await stored_turns(rig.core)
        intact(turns, turns)
        assert [r.getMessage() for r in run.errors.records[run.errors_seen :]] == []
        assert len(run.llm.requests) - run.asked_at_start == len(turns)


class TestSlack(Corpus):
    platform = "slack"


class TestTelegram(Corpus):
    platform = "telegram"


class TestDiscord(Corpus):
    platform = "discord"


class TestConsole(Corpus):
    platform = "console"
