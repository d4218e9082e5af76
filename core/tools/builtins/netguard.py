"""SSRF protection for `fetch_url`: the model must not be able to reach the bot's own network.

A bot that fetches URLs for anyone in a chat is a proxy into wherever it runs (cloud metadata at
169.254.169.254, an admin port on localhost, the office LAN). Hosts are checked at two points:
IP literals before the request (aiohttp connects to those without resolving), and names inside the
connector's resolver, so the address that was checked is the address that is connected to. Checking
in a separate lookup before the request would leave a DNS-rebinding window between check and use.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from core.tools.base import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CHECKS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "unspecified"),
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


class BlockedAddressError(ToolError):
    """The URL points at an address the policy refuses."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    # IPv4 addresses smuggled inside IPv6 forms reach the IPv4 host they embed.
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def non_public_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public internet address ("loopback", "private", ...), or None if it is."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.insert(0, embedded)  # the embedded address names the real reason
    for candidate in candidates:
        for attribute, label in _CHECKS:
            if getattr(candidate, attribute):
                return label
        if not candidate.is_global:  # e.g. 100.64.0.0/10 (carrier-grade NAT) is neither private nor global
            return "non-public"
    return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    allow_private: bool = False
    # (ip, port) pairs allowed regardless; lets tests run a local server with the guard switched on.
    exempt: frozenset[tuple[str, int]] = field(default_factory=frozenset)

    def check_address(self, address: str, port: int, *, host: str) -> None:
        """Raise BlockedAddressError unless connecting to `address`:`port` is allowed."""
        if self.allow_private or (address, port) in self.exempt:
            return
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise BlockedAddressError(f"cannot check address {address!r}") from None
        reason = non_public_reason(ip)
        if reason is not None:
            via = "" if host == address else f"{host} resolves to "
            raise BlockedAddressError(
                f"{via}{address}, a {reason} address; only public addresses can be fetched"
            )

    def check_url(self, url: URL) -> None:
        """Scheme check plus, for an IP-literal host, the address check (aiohttp won't resolve it)."""
        if url.scheme not in ("http", "https"):
            raise BlockedAddressError("only http and https URLs are allowed")
        host = url.host
        if not host:
            raise BlockedAddressError("the URL has no host")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return  # a name: checked by GuardedResolver when the connector resolves it
        self.check_address(host, url.port or 0, host=host)


class GuardedResolver(ThreadedResolver):
    """aiohttp resolver (loop.getaddrinfo) that refuses the whole host if any address is blocked."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await super().resolve(host, port, family)
        for result in results:
            self._policy.check_address(result["host"], port, host=host)
        return results
