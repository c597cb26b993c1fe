"""CMCD as a player sends it, for tests: the list, the ``CMCD`` query argument (URL-encoded as
``encodeURIComponent`` does, as dash.js sends it) and the headers (as Media3 sends them)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

Values = Mapping[str, int | bool | str]
_TOKENS = frozenset({"ot", "sf", "st"})
# Which header CTA-5004 puts each key in.
_HEADER_OF = {
    **dict.fromkeys(("br", "d", "ot", "tb"), "CMCD-Object"),
    **dict.fromkeys(("bl", "dl", "mtp", "nor", "nrr", "su"), "CMCD-Request"),
    **dict.fromkeys(("cid", "pr", "sf", "sid", "st", "v"), "CMCD-Session"),
    **dict.fromkeys(("bs", "rtp"), "CMCD-Status"),
}


def pair(key: str, value: int | bool | str) -> str:
    if value is True:
        return key
    if isinstance(value, int) or key in _TOKENS:
        return f"{key}={value}"
    text = quote(str(value), safe="") if key == "nor" else str(value)
    return key + '="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def listing(values: Values) -> str:
    return ",".join(pair(key, values[key]) for key in sorted(values))


def argument(values: Values | str) -> str:
    """``CMCD=...``: of ``values``, or of a list as it is (a malformed one, say)."""
    text = values if isinstance(values, str) else listing(values)
    return "CMCD=" + quote(text, safe="")


def appended(url: str, values: Values | str) -> str:
    """``url`` with the argument last, as dash.js appends it (to a signed URL too)."""
    return f"{url}{'&' if '?' in url else '?'}{argument(values)}"


def headers(values: Values) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for key in sorted(values):
        grouped.setdefault(_HEADER_OF[key], []).append(pair(key, values[key]))
    return {name: ",".join(pairs) for name, pairs in grouped.items()}
