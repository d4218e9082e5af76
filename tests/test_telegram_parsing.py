"""Telegram formatting (Markdown -> HTML Telegram accepts) and update parsing (recorded payload shapes)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from telegram import Bot, Update

from adapters.telegram.adapter import file_url_for
from adapters.telegram.format import to_html, visible_length
from adapters.telegram.inbound import BotIdentity, ReplyChains, Target, parse_update
from core.inbound import ConversationRef
from tests.fakes.telegram_files import ApiError
from tests.fakes.telegram_server import TOKEN, parse_html

ME = BotIdentity(7_000_000_001, "teammate_bot")
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "last_name": "Liddell"}
GROUP = {"id": -1001, "type": "supergroup", "title": "Team"}


@pytest.mark.parametrize(
    ("markdown", "markup"),
    [
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("snake_case_name and 1.5 (approx.)!", "snake_case_name and 1.5 (approx.)!"),
        ("**bold** _it_ ~~gone~~ `x<y`", "<b>bold</b> <i>it</i> <s>gone</s> <code>x&lt;y</code>"),
        ("# Title\ntext", "<b>Title</b>\ntext"),
        ("para\n\n# Title\n\n- a\n\n  b\n+", "para\n\n<b>Title</b>\n\n• a\n\n  b\n•"),
        ("- a\n- b", "• a\n• b"),
        ("3. a\n4. b", "3. a\n4. b"),
        ("```py\nif a<b: pass\n```", '<pre><code class="language-py">if a&lt;b: pass</code></pre>'),
        ("[x](https://e.org/?a=1&b=2)", '<a href="https://e.org/?a=1&amp;b=2">x</a>'),
        ("[x](relative/path)", "x"),
        ("> quoted", "<blockquote>quoted</blockquote>"),
        ("<b>raw html</b>", "&lt;b&gt;raw html&lt;/b&gt;"),
        ("**unclosed", "**unclosed"),
    ],
)
def test_markdown_becomes_telegram_html(markdown: str, markup: str) -> None:
    assert to_html(markdown) == markup
    parse_html(markup)  # Telegram's rules, as strict as the fake applies them


def test_any_text_gives_html_telegram_accepts_and_hardly_grows() -> None:
    alphabet = "ab _*`~[]()<>&#!|-+=.\n\\/:'\"1"
    rng = random.Random(4096)
    for _ in range(2000):
        source = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        markup = to_html(source)
        try:
            visible = parse_html(markup)
        except ApiError as error:
            raise AssertionError(f"{source!r} -> {markup!r}: {error.description}") from None
        # Only list continuation lines get indented; parts are split with room for that (outbox.py).
        assert len(visible) == visible_length(markup) <= len(source) + 2 * source.count("\n"), source


def test_file_url_for_a_self_hosted_server() -> None:
    assert file_url_for("http://localhost:8081/bot") == "http://localhost:8081/file/bot"
    assert file_url_for("https://api.telegram.org/bot") == "https://api.telegram.org/file/bot"


def update(message: dict[str, Any], update_id: int = 1) -> Update:
    body = {"message_id": 10, "date": 1_700_000_000, "chat": GROUP, "from": ALICE} | message
    parsed = Update.de_json({"update_id": update_id, "message": body}, Bot(TOKEN))
    assert parsed is not None
    return parsed


def test_private_message_is_a_dm_session_keyed_by_message() -> None:
    chat = {"id": 42, "type": "private", "first_name": "Alice"}
    addressed = parse_update(update({"chat": chat, "text": "hi"}), ME, ReplyChains())
    assert addressed is not None
    message = addressed.message
    assert message.is_dm and message.ref.key == "telegram||42|" and message.event_id == "42:10"
    assert message.sender.id == "42" and message.sender.name == "Alice Liddell"


def test_group_messages_need_a_mention_a_reply_or_our_command() -> None:
    chains = ReplyChains()
    assert parse_update(update({"text": "hello all"}), ME, chains) is None
    assert parse_update(update({"text": "/new@other_bot"}), ME, chains) is None
    assert parse_update(update({"text": "/weather"}), ME, chains) is None  # another bot's bare command
    mention = {"text": "hey @teammate_bot help", "entities": [{"type": "mention", "offset": 4, "length": 13}]}
    addressed = parse_update(update(mention), ME, chains)
    assert addressed is not None and addressed.message.text == "hey  help".strip()
    assert addressed.message.ref.thread == "10" and addressed.target.reply_to == 10
    own = parse_update(update({"text": "/new@TeamMate_Bot now"}), ME, chains)
    assert own is not None and own.message.text == "/new@TeamMate_Bot now"
    path = {
        "text": "/etc/hosts @teammate_bot?",
        "entities": [{"type": "mention", "offset": 11, "length": 13}],
    }
    assert parse_update(update(path), ME, chains) is not None  # a path is not a command


def test_a_reply_to_the_bot_continues_its_chain_and_other_bots_are_ignored() -> None:
    chains = ReplyChains()
    chains.link(-1001, 55, "7")
    bot_message = {
        "message_id": 55,
        "date": 1,
        "chat": GROUP,
        "from": {"id": ME.id, "is_bot": True, "first_name": "T"},
    }
    addressed = parse_update(update({"text": "more", "reply_to_message": bot_message}), ME, chains)
    assert addressed is not None and addressed.message.ref.thread == "7"
    other_bot = {"id": 9, "is_bot": True, "first_name": "Other"}
    assert parse_update(update({"text": "@teammate_bot hi", "from": other_bot}), ME, chains) is None
    caption = {
        "caption": "@teammate_bot look",
        "caption_entities": [{"type": "mention", "offset": 0, "length": 13}],
    }
    addressed = parse_update(update(caption), ME, chains)
    assert addressed is not None and addressed.message.text == "look"


def test_in_a_forum_topic_the_topic_is_the_session_and_its_root_is_not_a_reply() -> None:
    forum = GROUP | {"is_forum": True}
    creation = {
        "message_id": 3,
        "date": 1,
        "chat": forum,
        "from": {"id": ME.id, "is_bot": True, "first_name": "T"},
    }
    body = {"chat": forum, "text": "no mention", "message_thread_id": 3, "is_topic_message": True}
    assert parse_update(update(body | {"reply_to_message": creation}), ME, ReplyChains()) is None
    body["text"] = "@teammate_bot yes"
    body["entities"] = [{"type": "mention", "offset": 0, "length": 13}]
    addressed = parse_update(update(body | {"reply_to_message": creation}), ME, ReplyChains())
    assert addressed is not None and addressed.message.ref.thread == "topic:3"
    assert addressed.target.thread_id == 3


def test_the_reply_address_names_the_target_and_turns_stored_without_one_fall_back_to_the_ref() -> None:
    chat = {"id": 42, "type": "private", "first_name": "Alice"}
    forum = GROUP | {"is_forum": True}
    topic = {"chat": forum, "message_thread_id": 3, "is_topic_message": True}
    mention = {"text": "@teammate_bot yes", "entities": [{"type": "mention", "offset": 0, "length": 13}]}
    for body in ({"chat": chat, "text": "hi"}, mention, topic | mention):
        addressed = parse_update(update(body), ME, ReplyChains())
        assert addressed is not None
        message = addressed.message
        assert Target.from_address(message.reply_address, message.ref) == addressed.target
        # A turn stored before reply addresses existed: its conversation says where answers go.
        assert Target.from_address("", message.ref).chat_id == addressed.target.chat_id
    assert Target.from_address("", ConversationRef("telegram", "", "-1001", "10")) == Target(-1001, None, 10)
    assert Target.from_address("", ConversationRef("telegram", "", "-1001", "topic:3")) == Target(-1001, 3)
    assert Target.from_address("", ConversationRef("telegram", "", "42", "")) == Target(42, private=True)
