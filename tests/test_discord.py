"""The Discord adapter end to end: real discord.py against a fake Discord, the real core behind it.

Every test drives the adapter only through the fake's wire (gateway dispatches in, REST calls out) and
asserts on what Discord would hold afterwards: message contents, flags, threads, recorded calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from adapters.discord.adapter import DiscordStartError
from bot.config import Settings
from core.commands import COMMANDS
from tests.discordkit import fake, running_bot
from tests.fakes.discord_server import FakeDiscord, Interaction
from tests.fakes.discord_wire import FLAG_EPHEMERAL
from tests.fakes.llm_server import FakeLLMServer, Reply

__all__ = ["fake"]  # the fixture (tests/discordkit.py)


def content(message: dict[str, Any] | None) -> str:
    return "" if message is None else message["content"]


async def answered(fake: FakeDiscord, interaction: Interaction, text: str) -> None:
    await fake.wait_for(lambda: content(fake.original(interaction)) == text)


def paths(fake: FakeDiscord, owner: int | str) -> list[str]:
    return [f"{c.method} {c.path.split('/')[1]}" for c in fake.calls_for(owner)]


# --- /ask -------------------------------------------------------------------------------------------


async def test_ask_is_deferred_then_streams_with_a_tool_call(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script(
        "anthropic",
        Reply.tool_calls(("calculator", {"expression": "6*7"})),
        Reply.text("The answer is **42**.", chunks=4),
    )
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "what is 6*7?"})
        await answered(fake, interaction, "The answer is **42**.")
        await fake.wait_for(lambda: any("done" in str(m["embeds"]) for m in fake.followups(interaction)))

    calls = fake.calls_for(interaction.id)
    assert calls[0].method == "POST" and calls[0].path.endswith("/callback")
    assert calls[0].body["type"] == 5  # deferred: the 3-second acknowledgement comes first
    [tool] = fake.followups(interaction)
    embed = tool["embeds"][0]
    assert "calculator" in embed["title"] and "6*7" in embed["description"]
    assert embed["color"] == 0x2ECC71 and embed["footer"]["text"].startswith("done in")
    assert "42" in embed["fields"][0]["value"]
    posted = next(c for c in calls if c.method == "POST" and c.body and c.body.get("embeds"))
    assert posted.body["embeds"][0]["color"] == 0xF1C40F  # shown as running first, then updated
    original = fake.original(interaction)
    assert original is not None and original["flags"] & FLAG_EPHEMERAL == 0


async def test_long_answer_continues_in_followup_messages(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 7 for i in range(25))
    assert 4900 < len(text) < 5200
    llm_server.script("anthropic", Reply.text(text, chunks=20))
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "write a lot"})

        def shown() -> str:
            return "".join(content(m) for m in [fake.original(interaction), *fake.followups(interaction)])

        await fake.wait_for(lambda: shown() == text)
    parts = [fake.original(interaction), *fake.followups(interaction)]
    assert len(parts) == 3 and all(len(content(p)) <= 2000 for p in parts)


async def test_rate_limited_edit_is_retried_without_losing_text(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("Rate limits never eat my words.", chunks=3))
    fake.fail_next("PATCH", r"/messages/@original$", status=429, retry_after=0.05)
    async with running_bot(settings_for(), fake) as bot:
        interaction = await fake.slash("ask", {"prompt": "go"})
        await answered(fake, interaction, "Rate limits never eat my words.")
    edits = [c for c in fake.calls_for(interaction.id) if c.method == "PATCH"]
    assert edits[0].status == 429 and edits[-1].status == 200
    assert fake.received_429 == 1
    assert bot.observer.rate_limits == [("discord", "PATCH /webhooks")]  # no id, no interaction token
    assert not bot.observer.errors


async def test_rate_limited_channel_message_is_reported_once(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    fake.fail_next("POST", r"^/channels/\d+/messages$", status=429, retry_after=0.05)
    async with running_bot(settings_for(), fake) as bot:
        message = await fake.user_message("anyone there?", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(
            lambda: [content(m) for m in fake.bot_messages_in(thread)] == ["echo: anyone there?"]
        )
    assert fake.received_429 == 1
    assert bot.observer.rate_limits == [("discord", "POST /channels")]


async def test_an_answer_discord_refuses_is_reported_as_a_platform_error(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    fake.fail_next("PATCH", r"/messages/@original$", status=400, times=100)
    async with running_bot(settings_for(), fake) as bot:
        interaction = await fake.slash("ask", {"prompt": "hello?"})
        await fake.wait_for(lambda: bool(bot.observer.errors))
    assert bot.observer.errors == [("discord", "platform_api")]  # once, for the final answer
    assert content(fake.original(interaction)) == "" and not bot.observer.rate_limits


@pytest.mark.parametrize("expiry", ["clock", "server"])
async def test_turn_outliving_the_interaction_token_finishes_in_the_channel(
    fake: FakeDiscord,
    llm_server: FakeLLMServer,
    settings_for: Callable[..., Settings],
    expiry: str,
) -> None:
    text = "".join(f"Step {i} of a very long job. " for i in range(10))
    llm_server.script("anthropic", Reply.text(text, chunks=10, delay_s=0.15))
    async with running_bot(settings_for(), fake, edit_interval=1.0) as bot:
        interaction = await fake.slash("ask", {"prompt": "slow job"})
        await fake.wait_for(lambda: content(fake.original(interaction)).startswith("Step 0"))
        if expiry == "clock":
            bot.clock.now += 16 * 60  # the adapter knows tokens die after 15 minutes
        else:
            fake.expire_tokens()  # or learns it from Discord's 401 Invalid Webhook Token
        expired_at = len(fake.calls)
        await answered(fake, interaction, text)

    later = fake.calls[expired_at:]
    assert any(c.method == "PATCH" and c.path.startswith("/channels/") for c in later)
    if expiry == "clock":
        assert not any(c.path.startswith("/webhooks/") for c in later)
    assert fake.bot_messages_in(fake.channel_id) == [fake.original(interaction)]


async def test_provider_failure_is_told_to_the_user(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.cut(after_chunks=2, text="I was saying something"))
    llm_server.script("anthropic", Reply.server_error(500), Reply.server_error(500))
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "talk"})
        await fake.wait_for(lambda: "⚠️" in content(fake.original(interaction)))
    assert "sk-ant" not in content(fake.original(interaction))


# --- /chat, threads and mentions --------------------------------------------------------------------


async def test_chat_opens_a_thread_and_plain_messages_continue_it(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("chat", {"prompt": "Plan a team offsite"})
        await fake.wait_for(
            lambda: (
                fake.original(interaction) is not None
                and fake.thread_of(interaction.original_id or 0) is not None
            )
        )
        thread = fake.thread_of(interaction.original_id or 0)
        assert thread is not None
        await fake.wait_for(
            lambda: [content(m) for m in fake.bot_messages_in(thread)] == ["echo: Plan a team offsite"]
        )
        assert "Plan a team offsite" in content(fake.original(interaction))
        assert fake.channels[thread]["name"] == "Plan a team offsite"

        await fake.user_message("Somewhere warm please", channel=thread)  # no mention needed
        await fake.wait_for(
            lambda: [content(m) for m in fake.bot_messages_in(thread)][1:] == ["echo: Somewhere warm please"]
        )
    history = str(llm_server.bodies("anthropic")[-1]["messages"])
    assert "Plan a team offsite" in history  # the thread is one conversation
    assert any(c.path == f"/channels/{thread}/typing" for c in fake.calls)


async def test_mention_opens_a_thread_from_the_message(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        message = await fake.user_message("what's our deploy process?", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(lambda: len(fake.bot_messages_in(thread)) == 1)
        await fake.user_message("and rollbacks?", channel=thread)
        await fake.wait_for(
            lambda: [content(m) for m in fake.bot_messages_in(thread)][1:] == ["echo: and rollbacks?"]
        )
    assert fake.thread_of(thread) == thread
    assert [content(m) for m in fake.bot_messages_in(thread)] == [
        "echo: what's our deploy process?",
        "echo: and rollbacks?",
    ]
    assert fake.bot_messages_in(fake.channel_id) == []  # nothing but the thread in the channel


async def test_plain_channel_messages_and_other_bots_are_ignored(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    other_bot = fake.add_user("otherbot", bot=True)
    async with running_bot(settings_for(), fake):
        await fake.user_message("chatting among humans")
        await fake.user_message("hey bot", user=other_bot, mention_bot=True)
        marker = await fake.slash("ask", {"prompt": "marker"})
        await answered(fake, marker, "echo: marker")
    assert len(llm_server.requests) == 1
    assert fake.threads_of == {}


async def test_long_mention_is_answered_in_parts_inside_the_thread(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    question = "why " * 1000  # 4,000 characters (Nitro users may send that much)
    async with running_bot(settings_for(), fake):
        message = await fake.user_message(question, mention_bot=True)
        thread = int(message["id"])
        expected = "echo: " + question.strip()
        await fake.wait_for(lambda: "".join(content(m) for m in fake.bot_messages_in(thread)) == expected)
    assert all(len(content(m)) <= 2000 for m in fake.bot_messages_in(thread))


async def test_dm_is_answered_in_place(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    dm = fake.add_dm(fake.alice)
    async with running_bot(settings_for(), fake):
        await fake.user_message("hi in private", channel=dm)
        await fake.wait_for(lambda: [content(m) for m in fake.bot_messages_in(dm)] == ["echo: hi in private"])


# --- commands, access, duplicates --------------------------------------------------------------------


async def test_core_commands_answer_privately(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for(bot_models="openai:gpt-5.4-mini")
    async with running_bot(settings, fake):
        replies: dict[str, str] = {}
        for name, options in [
            ("help", None),
            ("model", None),
            ("model", {"name": "openai:gpt-5.4-mini"}),
            ("new", None),
            ("usage", None),
            ("stop", None),
            ("report", {"date": "2026-03-14"}),
        ]:
            interaction = await fake.slash(name, options)
            await fake.wait_for(lambda i=interaction: content(fake.original(i)) != "")  # type: ignore[misc]
            original = fake.original(interaction)
            assert original is not None and original["flags"] & FLAG_EPHEMERAL, name
            replies[f"{name} {options or ''}".strip()] = content(original)
        complete = await fake.slash("model", {"name": "gpt"}, interaction_type=4, focused="name")
        await fake.wait_for(lambda: bool(fake.calls_for(complete.id)))

    assert "/new" in replies["help"] and "/usage" in replies["help"]
    assert "uses anthropic:claude-sonnet-5-5" in replies["model"]
    assert "now uses openai:gpt-5.4-mini" in replies["model {'name': 'openai:gpt-5.4-mini'}"]
    assert "fresh conversation" in replies["new"]
    assert "Nothing is running" in replies["stop"]
    assert "Only admins" in replies["report {'date': '2026-03-14'}"]
    choices = fake.calls_for(complete.id)[0].body["data"]["choices"]
    assert [c["value"] for c in choices] == ["openai:gpt-5.4-mini"]
    assert llm_server.requests == []


async def test_refused_user_is_told_privately(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(allowed_users="discord:someone-else"), fake):
        interaction = await fake.slash("ask", {"prompt": "let me in"})
        await fake.wait_for(lambda: len(fake.followups(interaction)) == 1)
        chat = await fake.slash("chat", {"prompt": "let me in too"})
        await fake.wait_for(lambda: len(fake.followups(chat)) == 1)
    for refused in (interaction, chat):
        [note] = fake.followups(refused)
        assert note["flags"] & FLAG_EPHEMERAL and "allow list" in note["content"]
        assert fake.original(refused) is None  # the public "thinking…" response was removed
    assert fake.threads_of == {} and llm_server.requests == []


async def test_duplicate_dispatch_gets_one_answer(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "once"})
        await fake.redispatch(interaction)
        message = await fake.user_message("also once", mention_bot=True)
        await fake.dispatch("MESSAGE_CREATE", message)
        await answered(fake, interaction, "echo: once")
        await fake.wait_for(lambda: len(fake.bot_messages_in(int(message["id"]))) == 1)
        marker = await fake.slash("ask", {"prompt": "marker"})
        await answered(fake, marker, "echo: marker")
    assert len(fake.calls_for(interaction.id, "POST")) == 1
    assert len(llm_server.requests) == 3


async def test_resumed_session_replaying_events_gets_no_second_answer(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake):
        interaction = await fake.slash("ask", {"prompt": "before the reconnect"})
        message = await fake.user_message("mention before", mention_bot=True)
        await answered(fake, interaction, "echo: before the reconnect")
        await fake.wait_for(lambda: len(fake.bot_messages_in(int(message["id"]))) == 1)
        fake.replay_on_resume = 50  # Discord replays events the client had already seen
        await fake.drop_gateway()
        await fake.wait_for(fake.identified.is_set)
        marker = await fake.slash("ask", {"prompt": "after"})
        await answered(fake, marker, "echo: after")
    assert fake.session is not None and any(e["t"] == "RESUMED" for e in fake.session.events)
    replayed = [e for e in fake.session.events if e["t"] == "INTERACTION_CREATE"]
    assert len(replayed) == 2  # the first one was delivered again on RESUME (same seq)
    assert len(llm_server.requests) == 3
    assert len(fake.calls_for(interaction.id, "POST")) == 1


async def test_commands_sync_to_configured_guilds_only_when_changed(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    async with running_bot(settings, fake, guild_ids=[fake.guild_id]):
        pass
    names = sorted(c["name"] for c in fake.commands[fake.guild_id])
    assert names == sorted(["ask", "chat", *(c.name for c in COMMANDS)])  # the core's commands, each
    assert None not in fake.commands and fake.command_puts == 1
    async with running_bot(settings, fake, guild_ids=[fake.guild_id]) as bot:
        await fake.wait_for(lambda: len([c for c in fake.calls if "/commands" in c.path]) == 3)
        interaction = await fake.slash("ask", {"prompt": "guild command"})
        await answered(fake, interaction, "echo: guild command")
        assert bot.adapter.tree.get_command("ask") is not None
    assert fake.command_puts == 1  # unchanged commands are not re-sent


async def test_second_question_in_a_busy_channel_is_queued_then_answered(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    llm_server.script("anthropic", Reply.text("first answer, slowly", chunks=4, delay_s=0.1))
    async with running_bot(settings_for(), fake):
        first = await fake.slash("ask", {"prompt": "one"})
        await fake.wait_for(lambda: content(fake.original(first)) != "")
        second = await fake.slash("ask", {"prompt": "two"})
        await answered(fake, second, "echo: two")
        await answered(fake, first, "first answer, slowly")
    shown = [(c.body or {}).get("content") or "" for c in fake.calls_for(second.id, "PATCH")]
    assert "once I finish" in shown[0]  # a transient line in the response while it waits...
    assert fake.followups(second) == []  # ...replaced by the answer: nothing is left behind


async def test_bad_token_stops_with_a_clear_error(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    with pytest.raises(DiscordStartError, match="rejected DISCORD_BOT_TOKEN") as raised:
        async with running_bot(settings_for(), fake, bot_token="wrong-token-value"):
            pass
    assert "wrong-token-value" not in str(raised.value)


async def test_without_message_content_intent_threads_need_a_mention(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with running_bot(settings_for(), fake, message_content=False):
        message = await fake.user_message("start here", mention_bot=True)
        thread = int(message["id"])
        await fake.wait_for(lambda: len(fake.bot_messages_in(thread)) == 1)
        await fake.user_message("plain follow-up arrives blank", channel=thread)
        await fake.user_message("mentioned follow-up", channel=thread, mention_bot=True)
        await fake.wait_for(
            lambda: [content(m) for m in fake.bot_messages_in(thread)][1:] == ["echo: mentioned follow-up"]
        )
    assert len(llm_server.requests) == 2


async def test_roles_and_guilds_in_the_access_policy(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    team_role = 4242
    member = fake.add_user("member", roles=(team_role,))
    settings = settings_for(
        allowed_users=f"discord:role:{team_role}", allowed_channels=f"discord:workspace:{fake.guild_id}"
    )
    async with running_bot(settings, fake):
        allowed = await fake.slash("ask", {"prompt": "team only"}, user=member)
        await answered(fake, allowed, "echo: team only")
        refused = await fake.slash("ask", {"prompt": "outsider"})  # alice has no role
        await fake.wait_for(lambda: len(fake.followups(refused)) == 1)
    assert "allow list" in content(fake.followups(refused)[0])


async def test_restarted_bot_does_not_answer_redelivered_events_again(
    fake: FakeDiscord, llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()  # the same database across both runs
    async with running_bot(settings, fake):
        interaction = await fake.slash("ask", {"prompt": "before restart"})
        message = await fake.user_message("mention before restart", mention_bot=True)
        await answered(fake, interaction, "echo: before restart")
        await fake.wait_for(lambda: len(fake.bot_messages_in(int(message["id"]))) == 1)
    async with running_bot(settings, fake):
        await fake.redispatch(interaction)  # Discord refuses a second acknowledgement (40060)
        await fake.dispatch("MESSAGE_CREATE", message)  # the core's store remembers the message id
        marker = await fake.slash("ask", {"prompt": "marker"})
        await answered(fake, marker, "echo: marker")
    callbacks = [c.status for c in fake.calls_for(interaction.id) if c.path.endswith("/callback")]
    assert callbacks == [200, 400]
    assert len(fake.bot_messages_in(int(message["id"]))) == 1 and len(llm_server.requests) == 3
