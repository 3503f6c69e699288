"""The SSRF guard (SECURITY line 25): refused addresses never get a connection; the
checked address is the one connected to; redirects are not followed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from shared import ssrf
from shared.ssrf import UnsafeURL, check_url, request


@dataclass
class RawServer:
    """A plain TCP server on 127.0.0.1 that counts connections and answers one response."""

    port: int = 0
    accepted: int = 0
    hosts: list[str] = field(default_factory=list)
    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("host:"):
                    self.hosts.append(line.split(":", 1)[1].strip())
            writer.write(self.response)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    raw = RawServer()
    srv = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield raw
        srv.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection aiohttp is asked to open (recorded, then let through)."""
    calls: list[str] = []
    original = aiohttp.BaseConnector.connect

    async def spy(self, req, *args, **kwargs):
        calls.append(str(req.url))
        return await original(self, req, *args, **kwargs)

    monkeypatch.setattr(aiohttp.BaseConnector, "connect", spy)
    return calls


def fixed(mapping: dict[str, list[str]]):
    async def resolve(host: str) -> list[str]:
        return mapping[host]

    return resolve


# SECURITY line 25, and neighbours; {port} is the live loopback server's port.
REFUSED = [
    "http://127.0.0.1:{port}/hook",
    "https://127.0.0.1:{port}/hook",
    "https://[::ffff:127.0.0.1]:{port}/hook",
    "https://[::ffff:7f00:1]:{port}/hook",
    "https://2130706433:{port}/hook",
    "https://0x7f000001:{port}/hook",
    "https://017700000001:{port}/hook",
    "https://127.1:{port}/hook",
    "https://0177.0.0.1:{port}/hook",
    "https://[64:ff9b::7f00:1]:{port}/hook",
    "https://[2002:7f00:1::]:{port}/hook",
    "https://[::127.0.0.1]:{port}/hook",
    "https://[::1]:{port}/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/hook",
    "https://10.255.255.254/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://[fc00::1]/hook",
    "https://[fe80::1]/hook",
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",
    "https://private.test:{port}/hook",  # a name resolving to a private address
    "https://loop.test:{port}/hook",  # a name resolving to loopback
    "https://mixed.test/hook",  # one public and one private address
    "http://public.test/hook",  # http to a public address
    "http://8.8.8.8/hook",
    "ftp://public.test/hook",
    "https://user:pw@public.test/hook",
    "https://public.test/hook#frag",
    "https://nowhere.test/hook",  # does not resolve
]
RESOLVER = fixed({
    "private.test": ["10.1.2.3"], "loop.test": ["127.0.0.1"], "mixed.test": ["8.8.8.8", "10.0.0.7"],
    "public.test": ["8.8.8.8"], "nowhere.test": [],
})


@pytest.mark.parametrize("template", REFUSED)
@pytest.mark.parametrize("allow_loopback", [False, True])
async def test_refused_before_any_connection(
    template: str, allow_loopback: bool, server: RawServer, connects: list[str]
) -> None:
    url = template.format(port=server.port)
    loopback_ok = allow_loopback and any(
        part in url for part in ("//127.0.0.1:", "//[::1]:", "//loop.test:")
    )
    if loopback_ok:
        pytest.skip("allowed when loopback is on")
    with pytest.raises(UnsafeURL):
        await check_url(url, allow_loopback=allow_loopback, resolver=RESOLVER)
    with pytest.raises(UnsafeURL):
        await request("POST", url, allow_loopback=allow_loopback, resolver=RESOLVER, data=b"{}")
    assert connects == []
    assert server.accepted == 0


async def test_public_https_passes_the_check() -> None:
    target = await check_url("https://public.test:8443/hook?x=1", resolver=RESOLVER)
    assert (target.host, target.port, target.addresses) == ("public.test", 8443, ("8.8.8.8",))
    literal = await check_url("https://[2606:4700:4700::1111]/")
    assert literal.addresses == ("2606:4700:4700::1111",)


async def test_loopback_setting_allows_only_loopback(server: RawServer) -> None:
    url = f"http://127.0.0.1:{server.port}/hook"
    response = await request("GET", url, allow_loopback=True)
    assert (response.status, response.body, server.accepted) == (200, b"ok", 1)
    for allowed in ("http://[::1]:1/", "https://127.5.6.7/", "http://loop.test/"):
        await check_url(allowed, allow_loopback=True, resolver=RESOLVER)
    with pytest.raises(UnsafeURL):
        await check_url("http://public.test/", allow_loopback=True, resolver=RESOLVER)


async def test_dns_rebinding_connects_to_the_checked_address(server: RawServer) -> None:
    answers = [["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"]]
    calls = []

    async def rebinding(host: str) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, len(answers) - 1)]

    url = f"http://hooks.test:{server.port}/hook"
    target = await check_url(url, allow_loopback=True, resolver=rebinding)
    # The name now resolves elsewhere; the send still goes to the checked address only.
    assert await rebinding("hooks.test") == ["10.0.0.1"]
    response = await request("POST", url, target=target, data=b"{}")
    assert response.status == 200
    assert server.accepted == 1
    assert server.hosts == [f"hooks.test:{server.port}"]  # Host keeps the name
    assert len(calls) == 2  # the check and the test's own look-up: never at send


async def test_pinned_session_refuses_other_names(server: RawServer) -> None:
    target = await check_url(f"http://127.0.0.1:{server.port}/", allow_loopback=True)
    other = ssrf.Target("http://elsewhere.test/", "http", "127.0.0.1", server.port,
                        target.addresses)
    async with ssrf.open_session(other, timeout=5) as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get("http://elsewhere.test/")
    assert server.accepted == 0


async def test_redirects_are_not_followed(server: RawServer) -> None:
    server.response = (b"HTTP/1.1 301 Moved\r\nLocation: http://10.0.0.1/admin\r\n"
                       b"Content-Length: 0\r\nConnection: close\r\n\r\n")
    url = f"http://127.0.0.1:{server.port}/hook"
    response = await request("POST", url, allow_loopback=True, data=b"{}")
    assert response.status == 301
    assert server.accepted == 1
