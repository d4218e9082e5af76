"""Commands, defined once. Adapters expose them in their platform's idiom (slash command, bot command,
app command) by passing the text `/name args` to the router."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from core.budget import BudgetPolicy, utc_now
from core.inbound import InboundMessage
from core.models import ModelId, PriceTable, parse_model_id
from core.providers.pool import ProviderPool
from core.sessions import SessionManager
from core.storage.base import Store
from core.usage import usage_summary


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    name: str
    args: str


def parse_command(text: str) -> ParsedCommand | None:
    """`/model gpt-4o` -> ParsedCommand("model", "gpt-4o"); `/new@my_bot` works too (Telegram groups)."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) < 2 or stripped[1].isspace():
        return None
    head, _, args = stripped[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return ParsedCommand(name, args.strip())


@dataclass
class CommandContext:
    message: InboundMessage
    args: str
    is_admin: bool
    sessions: SessionManager
    store: Store
    pool: ProviderPool
    prices: PriceTable
    default_model: str
    offered_models: tuple[str, ...]
    budget: BudgetPolicy = field(default_factory=BudgetPolicy)  # timezone and caps (usage, report)


Handler = Callable[[CommandContext], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str  # one line, <= 256 chars (Telegram's limit for command descriptions)
    usage: str
    handler: Handler
    admin_only: bool = False  # kept out of everyone's command menu where the platform allows


async def _new(ctx: CommandContext) -> str:
    ref = ctx.message.ref
    stopped = await ctx.sessions.stop_anywhere(ref.key)
    await ctx.sessions.new_session(ref)
    note = " The answer in progress was stopped." if stopped else ""
    return f"Started a fresh conversation; earlier messages will not be used.{note}"


async def _model(ctx: CommandContext) -> str:
    state = await ctx.sessions.get(ctx.message.ref)
    current = state.record.model or ctx.default_model
    if not ctx.args:
        others = ", ".join(m for m in ctx.offered_models if m != current)
        if not others:
            return (
                f"This conversation uses {current}. "
                "No other model is offered (admins list them in BOT_MODELS)."
            )
        return (
            f"This conversation uses {current}.\nAlso available: {others}\n"
            "Switch with /model NAME, or /model default."
        )
    if ctx.args.lower() in ("default", "reset"):
        await ctx.sessions.set_model(ctx.message.ref, None)
        return f"Back to the default model, {ctx.default_model}."
    choices = f"Choose one of: {', '.join(ctx.offered_models)} (or /model default)."
    try:
        model = _offered_by_name(ctx.args, ctx.offered_models) or parse_model_id(ctx.args)
    except ValueError as error:
        return f"Cannot switch: {error}. {choices}"
    spelling = {m.lower(): m for m in ctx.offered_models}
    if str(model).lower() in spelling:
        model = parse_model_id(spelling[str(model).lower()])  # the spelling the bot was configured with
    elif not ctx.is_admin:  # admins may try any model; everyone else picks from what the bot offers
        return f"Cannot switch to {model}: this bot does not offer it. {choices}"
    if not ctx.pool.configured(model.provider):
        return f"Cannot switch to {model}: the {model.provider} provider is not configured on this bot."
    await ctx.sessions.set_model(ctx.message.ref, str(model))
    price_note = (
        "" if ctx.prices.price_of(model) else " I do not know its price, so its cost is recorded as unknown."
    )
    return f"This conversation now uses {model}.{price_note}"


def _offered_by_name(text: str, offered: tuple[str, ...]) -> ModelId | None:
    """The offered model whose name (without its provider) is `text`, when exactly one is: `/model
    llama3` for an offered `openai:llama3`, whose bare name alone would not say its provider."""
    matches = [m for m in offered if m.partition(":")[2].lower() == text.strip().lower()]
    return parse_model_id(matches[0]) if len(matches) == 1 else None


async def _usage(ctx: CommandContext) -> str:
    message = ctx.message
    return await usage_summary(
        ctx.store, message.sender.id, message.ref.platform, timezone=ctx.budget.timezone
    )


def _report_day(args: str, today: date) -> date | None:
    word = args.strip().lower()
    if word in ("", "today"):
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(word)
    except ValueError:
        return None


async def _report(ctx: CommandContext) -> str:
    if not ctx.is_admin:
        return "Only admins can see the team's report. Try /usage for your own usage."
    from core.reports.build import build_daily_report  # loaded on first use only
    from core.reports.markdown import report_markdown

    policy = ctx.budget
    day = _report_day(ctx.args, policy.local_day(utc_now()))
    if day is None:
        return f"Cannot read the date {ctx.args.strip()!r}: use YYYY-MM-DD, today or yesterday."
    report = await build_daily_report(
        ctx.store,
        day,
        policy.timezone,
        ctx.prices,
        daily_cap_usd=policy.total_cap_usd,
        user_cap_usd=policy.user_cap_usd,
    )
    return report_markdown(report)


AUDIT_ROWS = 20
AUDIT_DEFAULT_SINCE = "7d"


async def _audit(ctx: CommandContext) -> str:
    if not ctx.is_admin:
        return "Only admins can see the audit of tool calls."
    from core.audit import audit_markdown, parse_since  # loaded on first use only

    zone = ctx.budget.zone
    try:
        since = parse_since(ctx.args or AUDIT_DEFAULT_SINCE, utc_now(), zone)
    except ValueError as error:
        text = str(error)
        return f"{text[:1].upper()}{text[1:]}."
    rows = await ctx.store.audit_entries(since, limit=AUDIT_ROWS)
    return audit_markdown(rows, since, zone)


async def _stop(ctx: CommandContext) -> str:
    if await ctx.sessions.stop_anywhere(ctx.message.ref.key):
        return "Stopping the current answer."
    return "Nothing is running in this conversation."


async def _help(ctx: CommandContext) -> str:
    lines = ["I answer questions and can use tools. Talk to me normally, or use a command:"]
    lines += [f"• `/{c.usage}` — {c.summary}" for c in COMMANDS]
    return "\n".join(lines)


async def _regenerate(ctx: CommandContext) -> str:
    # The router answers /regenerate itself (it starts a turn); this entry lists it in /help and menus.
    return "Use the 🔄 button under an answer, or send /regenerate in its conversation."


COMMANDS: tuple[Command, ...] = (
    Command("new", "Start a fresh conversation", "new", _new),
    Command(
        "model", "Show or switch the model for this conversation", "model [provider:name|default]", _model
    ),
    Command("usage", "Your tokens and cost: today, 7 and 30 days", "usage", _usage),
    Command(
        "report", "Admins: the team's usage report for today or a date", "report [YYYY-MM-DD]", _report, True
    ),
    Command(
        "audit",
        "Admins: the latest tool calls and who approved them (default: 7 days)",
        "audit [24h|7d|YYYY-MM-DD]",
        _audit,
        True,
    ),
    Command("stop", "Stop the answer in progress", "stop", _stop),
    Command("regenerate", "Write the latest answer again, as a new version", "regenerate", _regenerate),
    Command("help", "What I can do and how to use me", "help", _help),
)
_BY_NAME = {c.name: c for c in COMMANDS} | {"start": Command("start", "Say hello", "start", _help)}


async def run_command(parsed: ParsedCommand, ctx: CommandContext) -> str:
    command = _BY_NAME.get(parsed.name)
    if command is None:
        return f"Unknown command /{parsed.name}. Try /help."
    return await command.handler(ctx)
