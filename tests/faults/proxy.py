"""A real TCP proxy on 127.0.0.1, in its own thread and event loop, that a test can break.

Between a live process and PostgreSQL or Redis it forwards bytes both ways until told
otherwise:

- `down()`: the server "crashes": every open connection is reset and new ones are refused
  (nothing listens on the port); `up()` listens on the same port again.
- `freeze_on(marker)`: a connection whose client sends `marker` stops moving from that
  moment, both ways, without being closed: a server that accepts and never answers.
- `silence()`: the whole server stops answering, as a stopped (SIGSTOP) or wedged
  process behind a live kernel would: open connections and new ones (still accepted)
  take every byte and forward nothing, either way; `speak()` forwards what was held
  and goes on, as the process resumed would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    frozen: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`."""

    target_host: str
    target_port: int
    port: int = 0
    connections: int = 0  # accepted so far
    frozen: int = 0  # connections frozen by `freeze_on` so far
    held: int = 0  # times a connection's bytes were held by `silence` so far
    _marker: bytes | None = None
    _pairs: set[_Pair] = field(default_factory=set)
    _server: asyncio.AbstractServer | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _speaking: asyncio.Event = field(default_factory=asyncio.Event)
    _waiting: set[asyncio.StreamWriter] = field(default_factory=set)  # accepted, held

    # ---- control, from the test's thread --------------------------------------------

    def down(self) -> None:
        """Reset every open connection and refuse new ones until `up()`."""
        self._call(self._down())

    def up(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    def freeze_on(self, marker: bytes | None) -> None:
        """Freeze each connection whose client sends `marker` (None: stop freezing)."""
        self._marker = marker

    def silence(self) -> None:
        """Stop answering: accept and hold every byte, on every connection, until
        `speak()`."""
        self._call(self._set_speaking(False))

    def speak(self) -> None:
        """Forward what `silence` held, and go on forwarding."""
        self._call(self._set_speaking(True))

    @contextlib.contextmanager
    def running(self) -> Iterator[TcpProxy]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        self._loop = loop
        try:
            self._call(self._set_speaking(True))
            self._call(self._listen())
            yield self
        finally:
            with contextlib.suppress(Exception):
                self._call(self._stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()

    def _call(self, coroutine) -> None:
        assert self._loop is not None, "the proxy is not running"
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # ---- the event loop's side ------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        """Down, and every connection's task ended before the loop stops."""
        self._speaking.set()
        await self._down()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_speaking(self, speaking: bool) -> None:
        if speaking:
            self._speaking.set()
        else:
            self._speaking.clear()

    async def _until_speaking(self) -> None:
        if not self._speaking.is_set():
            self.held += 1
            await self._speaking.wait()

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for pair in list(self._pairs):
            pair.released.set()
            for writer in (pair.client, pair.server):
                _reset(writer)
        self._pairs.clear()
        for writer in list(self._waiting):
            _reset(writer)

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self._speaking.is_set():  # a silent server accepts, and says nothing
            self._waiting.add(client_writer)
            try:
                await self._until_speaking()
            finally:
                self._waiting.discard(client_writer)
            if client_writer.is_closing():
                return
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
        except OSError:
            _reset(client_writer)
            return
        pair = _Pair(client_writer, server_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, pair, watch=True),
                self._pump(server_reader, client_writer, pair, watch=False),
            )
        finally:
            self._pairs.discard(pair)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: _Pair, *, watch: bool) -> None:
        tail = b""
        try:
            while data := await reader.read(CHUNK):
                marker = self._marker
                if watch and marker and not pair.frozen and marker in tail + data:
                    pair.frozen = True
                    self.frozen += 1
                if pair.frozen:
                    await pair.released.wait()  # hold the connection open, say nothing
                    return
                await self._until_speaking()
                writer.write(data)
                await writer.drain()
                if marker:
                    tail = (tail + data)[-len(marker):]
        except (ConnectionError, OSError):
            pass
        finally:
            if not pair.frozen:
                with contextlib.suppress(Exception):
                    await self._until_speaking()  # a silent server's close is held too
                    writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a crashed server's kernel would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
