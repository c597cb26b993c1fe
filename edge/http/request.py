"""One parsed request on the public listener: what the handlers read, and what the access log
and the request metrics need to know about its answer."""

from __future__ import annotations

from urllib.parse import unquote


class Request:
    """A request head. Header names are lower-case; a header sent more than once keeps its
    first value in :attr:`headers` and every value in :meth:`getall`."""

    __slots__ = (
        "cache_status",
        "cmcd",
        "cmcd_sid",
        "content_range",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query_string",
        "raw_path",
        "remote",
        "repeated",
        "route",
        "started",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        *,
        version: str,
        headers: dict[str, str],
        repeated: dict[str, list[str]] | None,
        remote: str | None,
        keep_alive: bool,
        started: float,
    ) -> None:
        self.method = method
        self.target = target  # origin-form: path and query, as sent (absolute-form reduced)
        raw_path, _, query = target.partition("?")
        # CMCD (edge.telemetry.cmcd) changes with every request: taken out of the query here,
        # once, so what reads the query (the signed-URL memo) sees the same URL each time.
        self.cmcd: str | None = None  # the CMCD argument's value as sent (URL-encoded)
        if "CMCD=" in query:
            query, self.cmcd = _without_cmcd(query)
        self.query_string = query  # without the CMCD argument
        self.raw_path = raw_path
        self.path = unquote(raw_path) if "%" in raw_path else raw_path  # decoded once
        self.version = version  # "1.1" or "1.0"
        self.headers = headers
        self.repeated = repeated
        self.remote = remote  # the peer's IP address
        self.keep_alive = keep_alive
        self.started = started  # perf_counter() when the head was complete
        # Filled in while answering, for the access log and the request metrics.
        self.route = "unmatched"
        self.cache_status = "-"
        self.content_range = "-"
        self.cmcd_sid: str | None = None  # the CMCD session id, once read

    def getall(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), in the order sent."""
        if self.repeated is not None and name in self.repeated:
            return self.repeated[name]
        value = self.headers.get(name)
        return [] if value is None else [value]


def _without_cmcd(query: str) -> tuple[str, str | None]:
    """``query`` without its ``CMCD`` arguments, and their values (several are joined into
    one list, whose repeated keys the CMCD parser then counts)."""
    kept: list[str] = []
    values: list[str] = []
    for argument in query.split("&"):
        if argument.startswith("CMCD="):
            values.append(argument[5:])
        else:
            kept.append(argument)
    return "&".join(kept), "%2C".join(values) if values else None
