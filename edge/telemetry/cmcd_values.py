"""The values of a CMCD list (``edge.telemetry.cmcd``): the type CTA-5004 gives each of its
keys, checked (a value, or the :class:`Problem` that has it ignored), the well-formedness
asked of other keys (RFC 8941 bare items), and URL decoding as players encode."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from urllib.parse import unquote, unquote_plus

MAX_STRING = 64  # CTA-5004's bound on cid and sid
MAX_KBPS = 100_000_000  # 100 Gbit/s: more is no player's measurement
MAX_MS = 86_400_000  # a day
MAX_RATE = 1000  # pr, the playback rate


class Problem(enum.Enum):
    """Why part of a report was ignored (the ``reason`` label of the malformed counter)."""

    TOO_LONG = "too_long"
    SYNTAX = "syntax"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    DUPLICATE = "duplicate"


Value = int | float | bool | str | tuple[int, int | None]
_Check = Callable[[str | None], "Value | Problem"]

# RFC 8941 grammar: keys, and the bare items other than strings.
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*")
_BARE_ITEM = re.compile(
    r"-?[0-9]{1,15}|-?[0-9]{1,12}\.[0-9]{1,3}|\?[01]|:[A-Za-z0-9+/=]*:|" + _TOKEN.pattern
)
_STRING_BODY = re.compile(r'[ !#-\[\]-~]*(?:\\["\\][ !#-\[\]-~]*)*')  # printable ASCII
_ESCAPE = re.compile(r"\\(.)")
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,3})?")


# The escapes encodeURIComponent makes of a CMCD list and of the relative URL in its nor.
_COMMON_ESCAPES = tuple(
    (f"%{ord(char):02X}", char) for char in ',="/?&:; '
)  # not "%25": replaced last, or "%252C" (the text "%2C") would become ","


def decoded(value: str, *, plus: bool) -> str:
    """``value`` decoded as urllib's ``unquote`` (``unquote_plus`` with ``plus``) does; the
    escapes of :data:`_COMMON_ESCAPES` are replaced in C, five times faster, and any other
    sends the value through urllib."""
    if "%" not in value and (not plus or "+" not in value):
        return value
    text = value
    for escape, char in _COMMON_ESCAPES:
        if escape in text:
            text = text.replace(escape, char)
    if (not plus or "+" not in text) and text.count("%") == text.count("%25"):
        return text.replace("%25", "%")
    return unquote_plus(value) if plus else unquote(value)


def integer_problem(value: str | None) -> Problem:
    if value is not None and value.startswith("-") and value[1:].isdigit():
        return Problem.OUT_OF_RANGE
    if value is not None and value.isascii() and value.isdigit():
        return Problem.OUT_OF_RANGE  # over 15 digits, or over the key's bound
    return Problem.WRONG_TYPE


def _boolean(value: str | None) -> Value | Problem:
    if value is None or value == "?1":
        return True
    return False if value == "?0" else Problem.WRONG_TYPE


def _token(allowed: frozenset[str]) -> _Check:
    def check(value: str | None) -> Value | Problem:
        if value in allowed:
            return value
        if value is None or not _TOKEN.fullmatch(value):
            return Problem.WRONG_TYPE
        return Problem.OUT_OF_RANGE

    return check


def _string(value: str | None) -> str | Problem:
    if value is None or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return Problem.WRONG_TYPE
    body = value[1:-1]
    if '"' not in body and "\\" not in body and body.isascii() and body.isprintable():
        return body  # the usual string, checked without a regex
    if not _STRING_BODY.fullmatch(body):
        return Problem.SYNTAX
    return _ESCAPE.sub(r"\1", body)


def _short_string(value: str | None) -> Value | Problem:
    text = _string(value)
    if isinstance(text, str) and len(text) > MAX_STRING:
        return Problem.OUT_OF_RANGE
    return text


def _relative_url(value: str | None) -> Value | Problem:
    text = _string(value)  # URL-encoded inside the string, as CTA-5004 asks
    return decoded(text, plus=False) if isinstance(text, str) else text


def _byte_range(value: str | None) -> Value | Problem:
    text = _string(value)
    if not isinstance(text, str):
        return text
    start, dash, end = text.partition("-")
    if not (dash and start.isdigit() and start.isascii() and (not end or end.isdigit())):
        return Problem.WRONG_TYPE
    if len(start) > 15 or len(end) > 15 or not end.isascii():
        return Problem.OUT_OF_RANGE
    first, last = int(start), int(end) if end else None
    if last is not None and last < first:
        return Problem.OUT_OF_RANGE
    return first, last


def _rate(value: str | None) -> Value | Problem:
    if value is None or not value.isascii():
        return Problem.WRONG_TYPE
    if value.startswith("-") and _DECIMAL.fullmatch(value[1:]):
        return Problem.OUT_OF_RANGE
    if not _DECIMAL.fullmatch(value):
        return Problem.WRONG_TYPE
    rate = float(value)
    return rate if rate <= MAX_RATE else Problem.OUT_OF_RANGE


# CTA-5004's keys and the type each must have: integers (checked in the loop, the most
# common type), and the rest.
INTEGER_BOUNDS = {
    "br": MAX_KBPS,
    "tb": MAX_KBPS,
    "mtp": MAX_KBPS,
    "rtp": MAX_KBPS,
    "bl": MAX_MS,
    "d": MAX_MS,
    "dl": MAX_MS,
    "v": 9,
}
CHECKS: dict[str, _Check] = {
    "bs": _boolean,
    "su": _boolean,
    "ot": _token(frozenset({"m", "a", "v", "av", "i", "c", "tt", "k", "o"})),
    "sf": _token(frozenset({"d", "h", "s", "o"})),
    "st": _token(frozenset({"v", "l"})),
    "cid": _short_string,
    "sid": _short_string,
    "nor": _relative_url,
    "nrr": _byte_range,
    "pr": _rate,
}


def well_formed(key: str, value: str | None) -> bool:
    """A key CTA-5004 does not define (a custom ``com.example-x``, a later version's)."""
    if not _KEY.fullmatch(key):
        return False
    return value is None or bool(_BARE_ITEM.fullmatch(value)) or isinstance(_string(value), str)
