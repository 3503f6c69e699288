"""Server-side request forgery guard for outgoing calls to URLs that partners give us
(webhook endpoints, logos, jwks_uri): docs/product.md 5.8, SECURITY line 25.

`check_url` parses the URL, resolves its host once and refuses it unless every address
is global unicast and the scheme is https. `open_session` gives an aiohttp session that
connects to exactly those checked addresses (a resolver pinned to them: the name is
never resolved again, so DNS rebinding between check and send has no effect) while TLS
SNI and the Host header still carry the name. Redirects must never be followed
(`allow_redirects=False`); callers treat a 3xx as a failure.

With `allow_loopback` (KOPPEL_WEBHOOKS_ALLOW_LOOPBACK, local runs and tests only) http
and https to 127.0.0.0/8 and ::1 are allowed as well, and nothing else.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# A resolver: host name -> the addresses it resolves to (as strings).
Resolver = Callable[[str], Awaitable[Sequence[str]]]

MAX_URL_LENGTH = 2000
RESOLVE_TIMEOUT_S = 5.0
# IPv6 ranges that embed or translate to IPv4 (or tunnel), refused outright: the embedded
# address could be internal, and a relay would reach it for us.
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "2001::/32",  # Teredo
        "2002::/16",  # 6to4
        "fc00::/7",  # unique local
        "fe80::/10",  # link local
        "fec0::/10",  # site local (deprecated)
    )
)
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")
# Labels made of digits or 0x-hex: the host is meant as a number (2130706433, 0x7f.1, 017.0.0.1).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


class UnsafeURL(ValueError):
    """A URL the guard refuses; the message says why (safe to show to the partner)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: its host, port and the addresses that may be connected to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def is_loopback(ip: IPAddress) -> bool:
    """127.0.0.0/8 or ::1 (not their IPv4-mapped or translated spellings)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _LOOPBACK_V4
    return ip == _LOOPBACK_V6


def address_allowed(ip: IPAddress, *, allow_loopback: bool = False) -> bool:
    """Whether `ip` may be connected to: global unicast, or loopback when allowed."""
    if allow_loopback and is_loopback(ip):
        return True
    if isinstance(ip, ipaddress.IPv6Address) and (
        ip.scope_id or any(ip in net for net in _REFUSED_V6)
    ):
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip.is_link_local:
        return False
    return ip.is_global and not ip.is_private and not ip.is_loopback


def _literal(host: str) -> IPAddress | None:
    """The IP address a host spells, refusing every non-canonical numeric spelling."""
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise UnsafeURL("the URL's IPv6 address is not valid") from None
    labels = host.rstrip(".").split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels):
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeURL("the URL's host is a number but not a dotted IPv4 address") from None
    return None


def parse_url(url: str, *, allow_loopback: bool = False) -> tuple[str, str, int]:
    """Scheme, host (lower case, IPv6 in brackets) and port of an acceptable URL's syntax."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not url.isascii():
        raise UnsafeURL(f"the URL must be ASCII and at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in url):
        raise UnsafeURL("the URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"the URL is not valid: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeURL("the URL must use https")
    if scheme == "http" and not allow_loopback:
        raise UnsafeURL("the URL must use https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("the URL must not carry credentials")
    if parts.fragment:
        raise UnsafeURL("the URL must not carry a fragment")
    host = parts.netloc.rpartition("@")[2]
    host = host[: host.index("]") + 1] if host.startswith("[") else host.partition(":")[0]
    host = host.lower()
    if not host or host == "[]":
        raise UnsafeURL("the URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def system_resolver(host: str) -> list[str]:
    """The addresses the system resolver gives for `host`."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ResolveCache:
    """A resolver's answers, kept for `ttl` seconds (like any caching DNS resolver). Only
    the answers are kept: `check_url` checks the addresses again on every call."""

    def __init__(self, resolver: Resolver | None = None, ttl: float = 30.0,
                 max_hosts: int = 10_000) -> None:
        self.resolver = resolver or system_resolver
        self.ttl, self.max_hosts = ttl, max_hosts
        self._answers: dict[str, tuple[float, list[str]]] = {}

    def expires(self, host: str, default: float) -> float:
        """When the kept answer for `host` expires (`default` if none is kept)."""
        hit = self._answers.get(host)
        return min(hit[0], default) if hit is not None else default

    async def __call__(self, host: str) -> list[str]:
        now = time.monotonic()
        hit = self._answers.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        names = list(await self.resolver(host))
        if len(self._answers) >= self.max_hosts:
            self._answers.clear()
        self._answers[host] = (now + self.ttl, names)
        return names


async def check_url(
    url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None
) -> Target:
    """Resolve and check `url`; the Target names the only addresses to connect to."""
    scheme, host, port = parse_url(url, allow_loopback=allow_loopback)
    literal = _literal(host)
    if literal is not None:
        names = [str(literal)]
    else:
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                names = list(await (resolver or system_resolver)(host))
        except (OSError, TimeoutError, UnicodeError):
            raise UnsafeURL(f"the host {host!r} does not resolve") from None
        if not names:
            raise UnsafeURL(f"the host {host!r} does not resolve")
    addresses = []
    for name in names:
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            raise UnsafeURL(f"the host {host!r} resolves to an invalid address") from None
        if not address_allowed(ip, allow_loopback=allow_loopback):
            raise UnsafeURL(f"the host {host!r} resolves to a non-public address")
        addresses.append(ip)
    if scheme == "http" and not all(is_loopback(ip) for ip in addresses):
        raise UnsafeURL("the URL must use https")
    return Target(url, scheme, host.strip("[]"), port, tuple(str(ip) for ip in addresses))


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only for the checked host, with its checked
    addresses, and refuses every other name."""

    def __init__(self, target: Target) -> None:
        self.target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.strip("[]").lower() != self.target.host:
            raise OSError(f"the SSRF guard refuses to resolve {host!r}")
        results: list[ResolveResult] = []
        for address in self.target.addresses:
            ip = ipaddress.ip_address(address)
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            results.append(ResolveResult(hostname=host, host=address, port=port, family=fam,
                                         proto=0, flags=socket.AI_NUMERICHOST))
        if not results:
            raise OSError(f"no checked address of family {family!r} for {host!r}")
        return results

    async def close(self) -> None:
        return None


class CheckedResolver(AbstractResolver):
    """An aiohttp resolver for a long-lived session: it answers only for hosts that
    `check_url` has just checked (`pin` the Target before each request), with the
    addresses that were checked, and refuses every other name."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], PinnedResolver] = {}

    def pin(self, target: Target) -> None:
        key = (target.host, target.port)
        pinned = self._pins.get(key)
        if pinned is None or pinned.target is not target:  # the same check's: kept
            self._pins[key] = PinnedResolver(target)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = self._pins.get((host.strip("[]").lower(), port))
        if pinned is None:
            raise OSError(f"the SSRF guard refuses to resolve {host!r}")
        return await pinned.resolve(host, port, family)

    async def close(self) -> None:
        return None


def shared_session(*, limit: int = 1000, limit_per_host: int = 100,
                   keepalive_s: float = 30.0) -> tuple[aiohttp.ClientSession, CheckedResolver]:
    """A long-lived aiohttp session (pooled keep-alive connections) that connects only to
    addresses pinned in its CheckedResolver: `check_url`, `pin`, then request with
    `allow_redirects=False`. A pooled connection was opened to a checked address."""
    resolver = CheckedResolver()
    connector = aiohttp.TCPConnector(
        resolver=resolver, use_dns_cache=False, limit=limit, limit_per_host=limit_per_host,
        keepalive_timeout=keepalive_s,
    )
    session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)
    return session, resolver


def open_session(target: Target, *, timeout: float, **options) -> aiohttp.ClientSession:
    """An aiohttp session that reaches only `target`'s checked addresses (use it once,
    with `allow_redirects=False`, and close it)."""
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(target), use_dns_cache=False, force_close=True, limit=1,
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False, trust_env=False, **options,
    )


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def request(
    method: str, url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None,
    timeout: float = 10.0, max_body: int = 64 * 1024, target: Target | None = None, **kwargs,
) -> Response:
    """One guarded HTTP request: check (unless a checked `target` is given), connect to
    the checked address only, never follow redirects; reads at most `max_body` bytes.
    Raises UnsafeURL before any connection is opened, or aiohttp/timeout errors."""
    target = target or await check_url(url, allow_loopback=allow_loopback, resolver=resolver)
    async with open_session(target, timeout=timeout) as session, session.request(
        method, target.url, allow_redirects=False, **kwargs
    ) as response:
        body = await response.content.read(max_body)
        return Response(response.status, dict(response.headers), body)
