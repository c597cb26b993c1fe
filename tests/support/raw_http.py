"""Send arbitrary bytes as an HTTP request and read the answer, for hostile-input tests: no
HTTP library stands between the test and the server to clean up what it sends."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def raw_request(port: int, request: bytes, *, head: bool = False, timeout: float = 15) -> RawReply:
    """Write ``request`` as is on a new connection and parse one response (status 0: the
    server closed the connection without answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method="HEAD" if head else "GET")
        try:
            response.begin()
        except http.client.RemoteDisconnected:
            return RawReply(0, {}, b"")
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return RawReply(response.status, headers, body)


def request_bytes(
    target: bytes, headers: list[tuple[bytes, bytes]], method: bytes = b"GET"
) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"
