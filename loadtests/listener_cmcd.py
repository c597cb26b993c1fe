"""Common Media Client Data (CTA-5004, CMCD v1) as dash.js sends it: one ``CMCD=`` query
argument whose value is the URL-encoded key list, so load tests exercise the edge's CMCD path.

The rules followed (CTA-5004 section 3 and dash.js / common-media-library's encoder):

- keys are sorted alphabetically and joined with commas, without spaces;
- ``True`` is the bare key (``bs``, ``su``); ``False``, ``None`` and ``""`` are left out;
- integers are written as is; ``bl``, ``dl`` (ms) and ``mtp``, ``rtp`` (kbps) are rounded to
  the nearest 100, ``br``, ``d``, ``tb`` to an integer;
- strings are quoted, with ``\\`` and ``"`` escaped; tokens (``ot``, ``sf``, ``st``) are bare;
- ``nor`` is URL-encoded inside its quotes; ``v=1`` and ``pr=1`` (the defaults) are left out;
- the whole list is URL-encoded as ``encodeURIComponent`` does.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Mapping
from urllib.parse import quote

QUERY_KEY = "CMCD"
TOKEN_KEYS = frozenset({"ot", "sf", "st"})  # values are tokens, written bare
ROUND_TO_HUNDRED = frozenset({"bl", "dl", "mtp", "rtp"})
ROUND_TO_INTEGER = frozenset({"br", "d", "tb"})
DEFAULTS: Mapping[str, float] = {"v": 1, "pr": 1}  # left out when equal
MAX_STRING = 64  # CTA-5004 caps string values at 64 characters
# Object types (``ot``) a listener fetches.
MANIFEST, INIT, AUDIO = "m", "i", "a"
# ``encodeURIComponent`` leaves these unescaped besides letters, digits and ``_.-~``.
_URI_COMPONENT_SAFE = "!*'()"

CmcdValue = bool | int | float | str | None


def _round(value: float) -> int:
    """Half up, as JavaScript's Math.round (Python's round() goes to even)."""
    return math.floor(value + 0.5)


def _number(key: str, value: float) -> str:
    if key in ROUND_TO_HUNDRED:
        return str(_round(value / 100) * 100)
    if key in ROUND_TO_INTEGER or float(value).is_integer():
        return str(_round(value))
    # A structured-field decimal: at most 3 fractional digits, at least one.
    text = f"{value:.3f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _string(value: str) -> str:
    if len(value) > MAX_STRING:
        raise ValueError(f"CMCD strings are at most {MAX_STRING} characters: {value!r}")
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"CMCD strings are printable ASCII: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode(data: Mapping[str, CmcdValue]) -> str:
    """The CMCD key list, e.g. ``bl=2000,br=160,cid="t1",ot=a,su``."""
    parts = []
    for key in sorted(data):
        value = data[key]
        if value is None or value is False or value == "" or DEFAULTS.get(key) == value:
            continue
        if value is True:
            parts.append(key)
        elif isinstance(value, int | float):
            parts.append(f"{key}={_number(key, value)}")
        elif key in TOKEN_KEYS:
            parts.append(f"{key}={value}")
        elif key == "nor":
            parts.append(f"{key}={_string(quote(value, safe=_URI_COMPONENT_SAFE))}")
        else:
            parts.append(f"{key}={_string(value)}")
    return ",".join(parts)


def query_argument(data: Mapping[str, CmcdValue]) -> str:
    """``CMCD=<encoded list>``, to append to a URL's query ("" when there is nothing)."""
    encoded = encode(data)
    return f"{QUERY_KEY}={quote(encoded, safe=_URI_COMPONENT_SAFE)}" if encoded else ""


def with_query_argument(url: str, data: Mapping[str, CmcdValue]) -> str:
    """``url`` with the CMCD argument appended after any query it has (dash.js puts it last)."""
    argument = query_argument(data)
    if not argument:
        return url
    return f"{url}{'&' if '?' in url else '?'}{argument}"


def relative_path(target: str, current: str) -> str:
    """``target``'s path relative to the URL path ``current`` (``nor`` must be relative)."""
    return posixpath.relpath(target.split("?", 1)[0], posixpath.dirname(current.split("?", 1)[0]))
