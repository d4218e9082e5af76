"""Which tool calls run on their own, which wait for a person, and which never run.

Rules come from BOT_TOOL_POLICY: `pattern[@where]=allow|ask|deny`, comma-separated, e.g.
`fetch_url=ask, post_message@slack:C0123=allow, *@telegram:-1001=deny`. `pattern` is a tool name or a
shell-style pattern (`mcp_*`); `where` is a channel (`platform:channel`, or a bare channel id on any
platform) or a whole platform (`slack`). The most specific matching rule decides (a channel rule beats a
platform rule beats a rule for everywhere; an exact tool name beats a pattern; on a tie the later rule
wins). With no matching rule, a tool that only reads is allowed and a tool that acts asks first.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Literal

from core.inbound import ConversationRef

Decision = Literal["allow", "ask", "deny"]
Approvers = Literal["asker_or_admins", "asker", "admins"]
DECISIONS: tuple[Decision, ...] = ("allow", "ask", "deny")
APPROVERS: tuple[Approvers, ...] = ("asker_or_admins", "asker", "admins")

_PATTERN = re.compile(r"^[a-zA-Z0-9_*?\[\]-]{1,64}$")


@dataclass(frozen=True, slots=True)
class PolicyRule:
    tool: str  # a name or a shell-style pattern
    where: str  # "" (everywhere), "slack" (a platform), "slack:C0123" or "C0123" (a channel)
    decision: Decision

    def matches(self, tool: str, ref: ConversationRef) -> bool:
        if not fnmatch.fnmatchcase(tool, self.tool):
            return False
        if not self.where:
            return True
        platform, _, channel = self.where.partition(":")
        if channel:
            return ref.platform == platform and ref.channel == channel
        return self.where in (ref.platform, ref.channel)

    def specificity(self) -> tuple[int, int]:
        if not self.where:
            place = 0
        elif ":" in self.where:
            place = 3
        else:
            place = 1  # a platform name or a bare channel id: ranked alike
        exact = not any(c in self.tool for c in "*?[")
        return place, int(exact)


@dataclass(frozen=True)
class ToolPolicy:
    rules: tuple[PolicyRule, ...] = ()

    def decide(self, tool: str, read_only: bool, ref: ConversationRef) -> Decision:
        best: PolicyRule | None = None
        for rule in self.rules:
            if rule.matches(tool, ref) and (best is None or rule.specificity() >= best.specificity()):
                best = rule
        if best is not None:
            return best.decision
        return "allow" if read_only else "ask"

    @staticmethod
    def parse(text: str) -> ToolPolicy:
        """Rules from BOT_TOOL_POLICY; raises ValueError naming the entry that is wrong."""
        rules: list[PolicyRule] = []
        for raw in text.replace(";", ",").split(","):
            entry = raw.strip()
            if not entry:
                continue
            target, sep, value = entry.partition("=")
            decision = _decision(value)
            if not sep or decision is None:
                raise ValueError(f"BOT_TOOL_POLICY entry {entry!r}: expected tool[@channel]=allow|ask|deny")
            tool, _, where = target.strip().partition("@")
            tool, where = tool.strip(), where.strip()
            if not _PATTERN.fullmatch(tool):
                raise ValueError(f"BOT_TOOL_POLICY entry {entry!r}: {tool!r} is not a tool name or pattern")
            if "@" in target and not where:
                raise ValueError(f"BOT_TOOL_POLICY entry {entry!r}: nothing after '@'")
            rules.append(PolicyRule(tool, where, decision))
        return ToolPolicy(tuple(rules))


def _decision(value: str) -> Decision | None:
    clean = value.strip().lower()
    return next((d for d in DECISIONS if d == clean), None)
