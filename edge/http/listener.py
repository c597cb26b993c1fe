"""The public listening socket: connections made as :class:`HttpConnection`, and a graceful
stop (no new connections; idle ones closed; busy ones finish their response, up to a
deadline, then are cut)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from edge.http.protocol import Connections, Handler, HttpConnection, Observer
from edge.http.request_head import Limits
from origin.settings import ServerSettings

BACKLOG = 1024


def limits_of(server: ServerSettings) -> Limits:
    return Limits(
        max_request_line=server.max_request_line_bytes,
        max_header_line=server.max_header_bytes,
        max_headers=server.max_headers,
        idle_timeout_s=server.idle_timeout_s,
        head_timeout_s=server.request_head_timeout_s,
        send_timeout_s=server.send_timeout_s,
        send_buffer_bytes=server.send_buffer_bytes,
    )


class Listener:
    def __init__(self, handler: Handler, observer: Observer, limits: Limits) -> None:
        self._handler = handler
        self._observer = observer
        self._limits = limits
        self.connections = Connections()
        self._server: asyncio.Server | None = None

    def _connection(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        return HttpConnection(
            self._handler, self._observer, self._limits, loop, registry=self.connections
        )

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Listen on ``host:port`` (0: a free port); the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection,
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=BACKLOG,
            family=socket.AF_INET6 if ":" in host else socket.AF_UNSPEC,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, drain_s: float) -> None:
        """Stop accepting, let responses in flight finish (up to ``drain_s``), close all."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.open):
            conn.close_when_idle()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connections.none.wait(), drain_s)
        for conn in list(self.connections.open):
            conn.cut()
        if self._server is not None:
            await self._server.wait_closed()
