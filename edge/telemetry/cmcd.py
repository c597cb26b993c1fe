"""Common Media Client Data (CTA-5004, CMCD v1): what a player says about its playback with
each request, as dash.js and Media3 send it, read strictly.

It comes as the ``CMCD`` query argument (the list URL-encoded) or in the ``CMCD-Request``,
``CMCD-Object``, ``CMCD-Status`` and ``CMCD-Session`` headers; when a request carries any of
the headers, they are its report and a ``CMCD`` argument is not read. The list is
``key[=value]`` pairs separated by commas (an RFC 8941 dictionary of bare items): a key alone
is boolean true (``?1``/``?0`` are read too), strings are quoted with ``\\"`` and ``\\\\``
escaped, tokens and integers are bare. CTA-5004's keys are typed, and other keys
(``com.example-x``, later versions') need only be well formed (``edge.telemetry.cmcd_values``).

A client's mistake is never an error: a pair that is malformed is left out, and why is noted
in :attr:`CmcdReport.ignored` (one :class:`Problem` per kind, however often): ``too_long``
(the whole list, past :data:`MAX_CHARS` or :data:`MAX_PAIRS`), ``syntax``, ``wrong_type`` (a
known key with a value of another type), ``out_of_range`` (a negative or implausible number,
an unknown token, a string over 64 characters, a range that ends before it starts) and
``duplicate`` (a key again: the first stays). Nothing here raises on any input.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from edge.http.request import Request
from edge.telemetry.cmcd_values import (
    CHECKS,
    INTEGER_BOUNDS,
    Problem,
    decoded,
    integer_problem,
    well_formed,
)

HEADERS = ("cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session")
HEADER_SET = frozenset(HEADERS)
MAX_CHARS = 1024  # of one request's list, decoded; dash.js sends some 400 at most
MAX_PAIRS = 64  # CMCD v1 has 18 keys, v2 some 40: more is not a player (and costs CPU)


class CmcdReport(NamedTuple):
    """The keys the edge uses, each None (or False) when absent or ignored. (A named tuple:
    frozen, and made three times faster than a frozen dataclass.)"""

    bitrate_kbps: int | None = None  # br: the encoded bitrate of the object asked for
    buffer_ms: int | None = None  # bl
    throughput_kbps: int | None = None  # mtp: the player's measured throughput
    stalled: bool = False  # bs: the buffer ran dry since the last request
    startup: bool = False  # su: needed urgently (startup, seek, recovery)
    session_id: str | None = None  # sid
    next_object: str | None = None  # nor: a URL relative to the request's, decoded
    next_range: tuple[int, int | None] | None = None  # nrr: first and last byte (None: open)
    ignored: frozenset[Problem] = frozenset()


# One pair, where an escaped quote makes counting quotes unsafe: a key, then "=" and a quoted
# string (which may hold commas) or a bare value, up to a comma or the end.
_ONE_PAIR = re.compile(r'([^,="]*(?:=(?:"[^"\\]*(?:\\.[^"\\]*)*"|[^,"]*))?)(?=,|$)')


def _pairs(text: str, ignored: set[Problem]) -> list[str]:
    """The list cut at its commas, but not at those inside a quoted string."""
    pieces = text.split(",")
    if '"' not in text:
        return pieces
    if "\\" in text:  # an escaped quote: quotes cannot simply be counted
        return _pairs_one_by_one(text, ignored)
    # A comma inside a string cut it: glue the pieces back until its quotes pair up.
    pairs: list[str] = []
    open_string: str | None = None
    for piece in pieces:
        odd = piece.count('"') & 1
        if open_string is not None:
            open_string += "," + piece
            if odd:
                pairs.append(open_string)
                open_string = None
        elif odd:
            open_string = piece
        else:
            pairs.append(piece)
    if open_string is not None:
        ignored.add(Problem.SYNTAX)  # a string never closed
    return pairs


def _pairs_one_by_one(text: str, ignored: set[Problem]) -> list[str]:
    pairs: list[str] = []
    position, end = 0, len(text)
    while position <= end:
        match = _ONE_PAIR.match(text, position)
        if match is None:  # an unclosed quote, or a quote inside a bare value
            ignored.add(Problem.SYNTAX)
            comma = text.find(",", position)
            if comma < 0:
                break
            position = comma + 1
            continue
        pairs.append(match[1])
        position = match.end() + 1
    return pairs


def parse(text: str) -> CmcdReport:
    """The report in a decoded CMCD list (``bl=2000,br=160,sid="s1",su``)."""
    if len(text) > MAX_CHARS or text.count(",") >= MAX_PAIRS:
        return _TOO_LONG
    if not text:
        return _NOTHING
    ignored: set[Problem] = set()
    seen: set[str] = set()
    found: dict[str, Any] = {}  # each value checked to its key's type
    for pair in _pairs(text, ignored):
        key, equals, assigned = pair.partition("=")
        value = assigned if equals else None
        if key in seen:
            ignored.add(Problem.DUPLICATE)
            continue
        seen.add(key)
        bound = INTEGER_BOUNDS.get(key)
        if bound is not None:
            if value is not None and value.isdigit() and value.isascii() and len(value) <= 15:
                number = int(value)
                if number <= bound:
                    found[key] = number
                    continue
            ignored.add(integer_problem(value))
            continue
        check = CHECKS.get(key)
        if check is None:
            if not well_formed(key, value):
                ignored.add(Problem.SYNTAX)
            continue
        result = check(value)
        if isinstance(result, Problem):
            ignored.add(result)
        else:
            found[key] = result
    get = found.get
    return CmcdReport(
        get("br"),
        get("bl"),
        get("mtp"),
        get("bs") is True,
        get("su") is True,
        get("sid"),
        get("nor"),
        get("nrr"),
        frozenset(ignored) if ignored else _NO_PROBLEMS,
    )


_NO_PROBLEMS: frozenset[Problem] = frozenset()
_NOTHING = CmcdReport()
_TOO_LONG = CmcdReport(ignored=frozenset((Problem.TOO_LONG,)))


def from_query(value: str) -> CmcdReport:
    """The report in a ``CMCD`` query argument's value as sent (URL-encoded)."""
    if len(value) - 2 * value.count("%") > MAX_CHARS:  # its decoded length, before decoding
        return _TOO_LONG
    return parse(decoded(value, plus=True))


def from_request(request: Request) -> CmcdReport | None:
    """The request's report: its CMCD headers if it has any, else its ``CMCD`` argument;
    None when it sends neither."""
    headers = request.headers
    if not HEADER_SET.isdisjoint(headers):
        return parse(",".join(value for name in HEADERS for value in request.getall(name) if value))
    if request.cmcd is not None:
        return from_query(request.cmcd)
    return None
