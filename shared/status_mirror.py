"""A process-local copy of the "active" answers of the status cache (shared/status.py).

Reading Redis on every API call costs far more than verifying the token's signature.
This mirror keeps the subjects this process has recently seen active, and Redis keeps
it coherent: one connection per process subscribes to server-assisted client-side
caching (`CLIENT TRACKING ON BCAST PREFIX koppel:status:`, RESP3), so every write,
expiry or eviction of a status key, and every FLUSHDB/FLUSHALL, sends this process an
invalidation. Before each lookup the socket is drained without blocking, so an
invalidation that reached this host before a request is applied before that request
is answered. Only "active" is ever stored, so a miss always goes back to Redis (and
through it to the database).

Whenever the mirror cannot be sure (not connected yet, connection lost, a TLS URL it
does not handle, an invalidation racing a fill), it answers "unknown" and the caller
asks Redis as before. It is used from one event loop thread only.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Sequence

import hiredis
import structlog
from redis.connection import parse_url

PREFIX = "koppel:status:"
CONNECT_TIMEOUT_S = 2.0
RETRY_S = 5.0
# How long one answer is reused at most, even without an invalidation: the bound on
# staleness if invalidations stop while the connection looks alive (a network
# partition, until TCP keepalive notices).
MAX_AGE_S = 30.0
MAX_ENTRIES = 200_000
READ_SIZE = 65536

log = structlog.get_logger("koppel.status_mirror")


def _command(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _open_tracking_socket(url: str, prefixes: Sequence[str] = (PREFIX,)) -> socket.socket:
    """A blocking handshake (run it in a thread): RESP3, auth, broadcast tracking of the
    keys under `prefixes`."""
    options = parse_url(url)
    if "connection_class" in options and "path" not in options:
        raise ValueError("the status mirror supports redis:// and unix:// URLs only")
    if "path" in options:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = options["path"]
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in options["host"] else socket.AF_INET)
        _keepalive(sock)
        address = (options["host"], options.get("port", 6379))
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(address)
        hello = ["HELLO", "3"]
        if options.get("password"):
            hello += ["AUTH", options.get("username") or "default", options["password"]]
        sock.sendall(
            _command(*hello, "SETNAME", "koppel-status-mirror")
            + _command("CLIENT", "TRACKING", "ON", "BCAST",
                       *(part for prefix in prefixes for part in ("PREFIX", prefix)))
        )
        reader = hiredis.Reader()
        replies: list[object] = []
        while len(replies) < 2:
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the connection during the handshake")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                replies.append(reply)
        for reply in replies:
            if isinstance(reply, Exception):
                raise ConnectionError(f"Redis refused status tracking: {reply}")
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


def _keepalive(sock: socket.socket) -> None:
    """Notice a silently dead peer within about half a minute, not hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


class StatusMirror:
    """Status keys known to be active, dropped as soon as Redis says they changed.

    `prefixes`: the keys Redis reports changes of (the status keys by default; the auth
    service adds the client keys and its failed-authentication counters, whose "known
    unchanged" it keeps the same way)."""

    def __init__(self, url: str, *, max_age: float = MAX_AGE_S,
                 prefixes: Sequence[str] = (PREFIX,)) -> None:
        self._url = url
        self._prefixes = tuple(prefixes)
        self._max_age = max_age
        self._sock: socket.socket | None = None
        self._poll = select.poll()
        self._reader = hiredis.Reader()
        self._active: dict[str, float] = {}  # key -> when Redis last said "active"
        # Tickets and changes share one counter: a lookup's ticket is the count at that
        # moment, a change of a key (or of all, `_cleared_at`) the count at its arrival.
        # Lookups of one key at once each keep their own ticket (none undoes another's).
        self._changed: dict[str, int] = {}
        self._cleared_at = 0
        self._tickets = 0
        self._next_attempt = 0.0
        self._connecting = False

    @property
    def connected(self) -> bool:
        return self._sock is not None

    async def ensure_connected(self) -> bool:
        """Connect if not connected (at most one attempt per RETRY_S); whether usable."""
        if self._sock is not None:
            return True
        now = time.monotonic()
        if self._connecting or now < self._next_attempt:
            return False
        self._connecting, self._next_attempt = True, now + RETRY_S
        try:
            sock = await asyncio.to_thread(_open_tracking_socket, self._url, self._prefixes)
        except ValueError as exc:  # a URL it cannot handle: stay off for good
            self._next_attempt = float("inf")
            log.info("status mirror off; every call asks Redis", reason=str(exc))
            return False
        except (OSError, hiredis.HiredisError) as exc:
            log.warning("status mirror unavailable", error=str(exc))
            return False
        finally:
            self._connecting = False
        self._reset()
        self._reader = hiredis.Reader()
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        return True

    def lookup(self, keys: Sequence[str]) -> int | None:
        """None if every key is known active; else a ticket to pass to `remember`."""
        self._drain()
        if self._sock is None:
            return 0
        active, now = self._active, time.monotonic()
        for key in keys:
            seen = active.get(key)
            if seen is None or now - seen > self._max_age:
                break
        else:
            return None
        self._tickets += 1
        return self._tickets

    def remember(self, keys: Sequence[str], ticket: int) -> bool:
        """Record that Redis answered every key active after the lookup that gave `ticket`,
        unless an invalidation for any of them arrived since that lookup; whether it was
        recorded."""
        self._drain()
        changed = self._changed
        if (self._sock is None or ticket <= self._cleared_at
                or any(changed.get(key, 0) > ticket for key in keys)):
            return False
        if len(self._active) + len(keys) > MAX_ENTRIES:
            self._active.clear()
        now = time.monotonic()
        for key in keys:
            self._active[key] = now
        return True

    def forget(self, keys: Sequence[str]) -> None:
        """Stop trusting what is known of `keys` (this process just changed them itself)."""
        for key in keys:
            self._changed_now(key)

    def close(self) -> None:
        """Close the tracking connection and forget everything."""
        self._reset()

    def _clear(self) -> None:
        """Forget every key, and refuse every ticket given out so far."""
        self._active.clear()
        self._changed.clear()
        self._tickets += 1
        self._cleared_at = self._tickets

    def _changed_now(self, key: str) -> None:
        self._active.pop(key, None)
        if len(self._changed) >= MAX_ENTRIES:
            self._clear()
        self._tickets += 1
        self._changed[key] = self._tickets

    def _reset(self) -> None:
        self._clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _drain(self) -> None:
        sock = self._sock
        # poll() is the cheap question; it also reports a closed or broken connection.
        if sock is None or not self._poll.poll(0):
            return
        try:
            while True:
                try:
                    data = sock.recv(READ_SIZE)
                except BlockingIOError:
                    return
                if not data:
                    raise ConnectionError("Redis closed the tracking connection")
                self._reader.feed(data)
                while (message := self._reader.gets()) is not False:
                    self._apply(message)
        except (OSError, hiredis.ProtocolError) as exc:
            log.warning("status mirror disconnected", error=str(exc))
            self._reset()

    def _apply(self, message: object) -> None:
        if not (isinstance(message, list) and len(message) == 2 and message[0] == b"invalidate"):
            return
        keys = message[1]
        if keys is None:  # FLUSHDB / FLUSHALL
            self._clear()
            return
        for raw in keys:
            self._changed_now(raw.decode())
