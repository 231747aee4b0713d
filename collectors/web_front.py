"""The HTTP front: uvicorn's HTTP/1.1 server (its h11 protocol) on one asyncio event loop.

Why uvicorn: a widely used, actively maintained production server; its h11 protocol bounds a
request's line and headers (``MAX_HEADER_BYTES``, answered 400 past it), flow-controls writes,
and costs no thread per connection (an idle keep-alive connection is a few kilobytes on the
loop). What it leaves open is closed here, per connection:

- at most ``MAX_CONNECTIONS`` open at once (more are reset at once, before any parsing);
- a request must arrive whole within ``HEADER_TIMEOUT`` of its first byte, or of the
  connection, however slowly it trickles (slowloris), and be answered within
  ``RESPONSE_TIMEOUT`` (a client that does not read its answer);
- an idle keep-alive connection closes after ``IDLE_TIMEOUT``;
- TLS: the handshake runs on the loop, with the certificate files' current context (a
  rotated certificate is used by the next connection), ``HANDSHAKE_TIMEOUT`` to complete it,
  ``client_allowed_sans`` checked before the first request, and a plain-HTTP request on the
  TLS port answered with one 400 line (as Go's exporter-toolkit does).

The requests themselves are answered by an ASGI application (:mod:`collectors.web`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT", "MAX_CONNECTIONS", "MAX_HEADER_BYTES", "Front", "TLSFront"]

log = logging.getLogger("carekpi.web")
# uvicorn warns once per malformed request: a flood of them must not flood the log too.
logging.getLogger("uvicorn.error").setLevel(logging.ERROR)

LOOPS = 8
MAX_CONNECTIONS = 512  # in all, over the loops
MAX_HEADER_BYTES = 16 * 1024  # the request line and all headers together
HEADER_TIMEOUT = 10.0
RESPONSE_TIMEOUT = 30.0
IDLE_TIMEOUT = 30
HANDSHAKE_TIMEOUT = 10
_TICK = 1.0
_PLAIN_HTTP_REPLY = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)


class TLSFront:
    """What the front needs of the TLS settings: the current context, the SAN check."""

    def __init__(self, context: Callable[[], Any], client_allowed: Callable[[Any], bool]):
        self.context, self.client_allowed = context, client_allowed


class _Shared:
    """State every connection of one server shares, across its event loops."""

    def __init__(self, tls: TLSFront | None) -> None:
        self.tls = tls
        self.open = 0
        self._lock = threading.Lock()

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        with self._lock:
            admitted = self.open < MAX_CONNECTIONS
            self.open += admitted
        if not admitted:
            transport.abort()  # type: ignore[attr-defined]
        return admitted

    def release(self) -> None:
        with self._lock:
            self.open -= 1


_HEAD_TOO_LARGE = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
                   b"connection: close\r\ncontent-length: 26\r\n\r\nRequest head is too large\n")


def _head_size(buffered: bytes | bytearray, data: bytes) -> int:
    """The request head's size so far: up to its blank line, or all of it while incomplete."""
    head = bytes(buffered) + data
    end = head.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else len(head)


class _Connection(H11Protocol):
    """uvicorn's h11 protocol with the per-connection limits of this module."""

    shared: _Shared  # set on a subclass per server
    counted = True  # False behind TLS: the TLS layer counts the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timer: asyncio.TimerHandle | None = None
        self._since: float | None = None
        if self.counted and not self.shared.admit(transport):
            self.transport = None  # type: ignore[assignment]
            return
        tls = self.shared.tls
        if tls is not None and not tls.client_allowed(transport.get_extra_info("peercert")):
            log.debug("client certificate has no allowed SAN; closing")
            self.transport = None  # type: ignore[assignment]
            transport.abort()
            return
        super().connection_made(transport)
        self._timer = self.loop.call_later(_TICK, self._watch)

    def data_received(self, data: bytes) -> None:
        """A request head over MAX_HEADER_BYTES is refused however it arrives (h11's own limit
        holds only for a head still incomplete, so one read of up to 256 KiB got through)."""
        if self.conn.their_state is h11.IDLE and _head_size(self.conn.trailing_data[0],
                                                            data) > MAX_HEADER_BYTES:
            self.transport.write(_HEAD_TOO_LARGE)
            self.transport.close()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is None:  # refused in connection_made
            return
        if self.counted:
            self.shared.release()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Close a connection whose request does not arrive, or whose answer does not leave,
        in time; idle keep-alive connections are uvicorn's (``IDLE_TIMEOUT``)."""
        now = self.loop.time()
        answering = self.cycle is not None and not self.cycle.response_complete
        waiting = (self.conn.their_state is h11.IDLE and not answering
                   and self.timeout_keep_alive_task is None)
        if answering or waiting:
            self._since = now if self._since is None else self._since
            if now - self._since > (RESPONSE_TIMEOUT if answering else HEADER_TIMEOUT):
                self.transport.abort()
                return
        else:
            self._since = None
        self._timer = self.loop.call_later(_TICK, self._watch)


class _CountedTLS(sslproto.SSLProtocol):
    shared: _Shared

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.shared.release()


class _TLSSniffer(asyncio.Protocol):
    """The first bytes of a TLS connection: a handshake goes on to TLS, anything else gets
    the plain-HTTP 400 line."""

    connection: type[_Connection]
    tls_layer: type[_CountedTLS]

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: Any,
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.inner = self.connection(config, server_state, app_state, _loop)
        self.shared = self.connection.shared
        self.transport: asyncio.Transport | None = None
        self.handed_over = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.shared.admit(transport):
            self.transport = transport  # type: ignore[assignment]
            self._timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT,
                                                                transport.abort)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        transport, tls = self.transport, self.shared.tls
        if transport is None or tls is None:
            return
        self._timer.cancel()
        if data[:1] != b"\x16":  # not a TLS handshake record: plain HTTP or junk
            transport.write(_PLAIN_HTTP_REPLY)
            transport.close()
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        waiter.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            context = tls.context()
        except Exception:  # pragma: no cover - _TLSState keeps the last good context
            transport.abort()
            return
        layer = self.tls_layer(loop, self.inner, context, waiter, server_side=True,
                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        self.handed_over = True
        transport.set_protocol(layer)
        layer.connection_made(transport)
        view = memoryview(data)
        while view:
            buffer = layer.get_buffer(len(view))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            layer.buffer_updated(size)
            view = view[size:]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None and not self.handed_over:
            self._timer.cancel()
            self.shared.release()


class Front:
    """uvicorn servers for ``app`` on one bound socket: ``LOOPS`` event loops, each in its own
    thread, accepting from the same socket. One loop would send every answer in turn; with a
    few, the kernel copies of concurrent scrapes' bodies overlap as they did with a thread
    per connection (50 scrapers at once: p50 about 200 ms on one loop, 30-60 ms on eight)."""

    def __init__(self, app: Any, sock: socket.socket, tls: TLSFront | None,
                 name: str) -> None:
        shared = _Shared(tls)
        connection = type("Connection", (_Connection,),
                          {"shared": shared, "counted": tls is None})
        protocol: type[asyncio.Protocol] = connection
        if tls is not None:
            layer = type("TLSLayer", (_CountedTLS,), {"shared": shared})
            protocol = type("TLSSniffer", (_TLSSniffer,),
                            {"connection": connection, "tls_layer": layer})
        self._sock = sock
        self.servers: list[uvicorn.Server] = []
        self.threads: list[threading.Thread] = []
        for i in range(LOOPS):
            config = uvicorn.Config(
                app, http=protocol, lifespan="off", log_config=None, access_log=False,
                proxy_headers=False, server_header=False, date_header=False,
                headers=[("Server", "CareKPI")], h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                timeout_keep_alive=IDLE_TIMEOUT, timeout_graceful_shutdown=1, backlog=128,
                loop="asyncio")
            server = uvicorn.Server(config)
            self.servers.append(server)
            self.threads.append(threading.Thread(
                target=_serve, args=(server, sock.dup()),
                name=name if i == 0 else f"{name}.{i}", daemon=True))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        deadline = time.monotonic() + 10
        while (not all(s.started for s in self.servers) and time.monotonic() < deadline
               and all(t.is_alive() for t in self.threads)):
            time.sleep(0.005)

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = server.force_exit = True
        for thread in self.threads:
            thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._sock.close()


def _serve(server: uvicorn.Server, listener: socket.socket) -> None:
    asyncio.run(server.serve(sockets=[listener]))
