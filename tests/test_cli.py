"""The `bot` command as a user runs it: a real subprocess, piped stdin, the fake LLM server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.fakes.llm_server import FakeLLMServer, Reply

SECRET = "sk-ant-cli-secret-value"


def bot_env(server: FakeLLMServer | None, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OPENAI_", "BOT_", "DATABASE_"))
    }
    if server is not None:
        env |= {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": server.anthropic_base_url}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env |= extra
    return env


async def run_bot(args: list[str], stdin: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_piped_chat_streams_answers_and_tools(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.script(
        "anthropic",
        Reply.text("Hello from the bot!", chunks=3),
        Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"})),
        Reply.text("The answer is 42."),
    )
    code, out, err = await run_bot(
        ["chat"], "hi\nwhat is 6*7?\n/usage\n", bot_env(llm_server, tmp_path), tmp_path
    )
    assert code == 0, err
    assert out.startswith("Hello from the bot!\nLet me compute.\nThe answer is 42.\n")
    assert "Your usage" in out
    assert "⚙ calculator(expression='6*7')" in err
    assert "✓ calculator" in err and ": 42" in err
    assert SECRET not in out + err


async def test_piped_chat_answers_an_approval_card(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"})),
        Reply.text("The answer is 42."),
        Reply.text_then_tools("Again.", ("calculator", {"expression": "1+1"})),
        Reply.text("I could not compute it."),
    )
    env = bot_env(llm_server, tmp_path, BOT_TOOL_POLICY="calculator=ask")
    code, out, err = await run_bot(["chat"], "what is 6*7?\ny\nand 1+1?\n", env, tmp_path)
    assert code == 0, err
    assert out == "Let me compute.\nThe answer is 42.\nAgain.\nI could not compute it.\n"
    assert err.count("Approval needed: I want to run calculator") == 2
    assert "calculator approved by" in err and "✓ calculator" in err
    assert "no more input" in err and "calculator denied by" in err  # the input ended at the 2nd card
    assert SECRET not in out + err


async def test_chat_continues_the_conversation_across_runs(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    env = bot_env(llm_server, tmp_path)
    await run_bot(["chat"], "first run\n", env, tmp_path)
    code, out, _ = await run_bot(["chat"], "second run\n", env, tmp_path)
    assert code == 0 and out == "echo: second run\n"
    last = llm_server.bodies("anthropic")[-1]["messages"]
    assert [m["content"][0]["text"] for m in last] == ["first run", "echo: first run", "second run"]
    _, _, _ = await run_bot(["chat", "--new"], "fresh\n", env, tmp_path)
    assert len(llm_server.bodies("anthropic")[-1]["messages"]) == 1


async def test_run_without_platforms_and_without_a_terminal_says_what_is_missing(
    llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    # In a terminal `bot run` opens the console chat (see test_run_in_a_terminal_opens_the_console);
    # as a service with no platform it must not exit 0 and be restarted in a loop.
    code, out, err = await run_bot(["run"], "hello\n", bot_env(llm_server, tmp_path), tmp_path)
    assert code == 2 and out == ""
    assert "no chat platform is configured" in err and "bot chat" in err


async def test_provider_error_is_a_clear_line_not_a_traceback(
    llm_server: FakeLLMServer, tmp_path: Path
) -> None:
    llm_server.script("anthropic", Reply.error(401, "invalid x-api-key"))
    code, _, err = await run_bot(["chat"], "hi\n", bot_env(llm_server, tmp_path), tmp_path)
    assert code == 0
    assert "Sorry, I could not get an answer from the model" in err
    assert "Traceback" not in err and SECRET not in err


async def test_bad_settings_give_one_line_each(tmp_path: Path) -> None:
    env = bot_env(None, tmp_path, ANTHROPIC_API_KEY="k", BOT_MODEL="mistral:large", BOT_MAX_STEPS="lots")
    code, _, err = await run_bot(["chat"], "", env, tmp_path)
    assert code == 2
    lines = err.strip().splitlines()
    assert any(line.startswith("config error: BOT_MODEL: unknown provider 'mistral'") for line in lines)
    assert any(line.startswith("config error: BOT_MAX_STEPS:") for line in lines)
    assert "Traceback" not in err


async def test_no_llm_key_is_explained(tmp_path: Path) -> None:
    code, _, err = await run_bot(["chat"], "", bot_env(None, tmp_path), tmp_path)
    assert code == 2
    assert "set ANTHROPIC_API_KEY or OPENAI_API_KEY" in err


async def test_bad_database_url(tmp_path: Path) -> None:
    env = bot_env(None, tmp_path, ANTHROPIC_API_KEY="k", DATABASE_URL="mysql://user:hunter2@db/bot")
    code, _, err = await run_bot(["chat"], "", env, tmp_path)
    assert code == 2 and "DATABASE_URL" in err and "hunter2" not in err


async def test_dotenv_file_is_read(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    env = bot_env(None, tmp_path)
    (tmp_path / ".env").write_text(
        f"ANTHROPIC_API_KEY={SECRET}\nANTHROPIC_BASE_URL={llm_server.anthropic_base_url}\n", encoding="utf-8"
    )
    code, out, err = await run_bot(["chat"], "from dotenv\n", env, tmp_path)
    assert code == 0, err
    assert out == "echo: from dotenv\n"


async def test_help(tmp_path: Path) -> None:
    code, out, _ = await run_bot(["--help"], "", bot_env(None, tmp_path), tmp_path)
    assert code == 0
    assert "run" in out and "chat" in out


async def test_discord_invite_prints_the_url(tmp_path: Path) -> None:
    from aiohttp import web

    seen: list[str] = []

    async def application(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(text='{"id": "112233445566778899"}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v10/oauth2/applications/@me", application)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        env = bot_env(
            None,
            tmp_path,
            ANTHROPIC_API_KEY="k",
            DISCORD_BOT_TOKEN="discord-secret-token",
            DISCORD_API_URL=f"http://127.0.0.1:{port}/api/v10",
        )
        code, out, err = await run_bot(["discord-invite"], "", env, tmp_path)
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert out.strip().startswith("https://discord.com/oauth2/authorize?client_id=112233445566778899")
    assert "permissions=309237763072" in out and "applications.commands" in out
    assert seen == ["Bot discord-secret-token"]
    assert "discord-secret-token" not in out + err


async def test_discord_invite_without_a_token(tmp_path: Path) -> None:
    code, _, err = await run_bot(
        ["discord-invite"], "", bot_env(None, tmp_path, ANTHROPIC_API_KEY="k"), tmp_path
    )
    assert code == 2 and "DISCORD_BOT_TOKEN is not set" in err


async def test_run_in_a_terminal_opens_the_console(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    import pty

    controller, terminal = pty.openpty()  # stdin is a real terminal, as after `make run`
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        stdin=terminal,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=bot_env(llm_server, tmp_path),
        cwd=tmp_path,
    )
    os.close(terminal)
    try:
        os.write(controller, b"hello\n/exit\n")
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        os.close(controller)
    assert process.returncode == 0, err
    assert "opening the console chat" in err.decode()
    assert "echo: hello" in out.decode()
