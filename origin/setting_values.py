"""The value parsers of the settings: each takes a TOML value or an env string and returns the
typed value, or raises ``ValueError`` with the reason (``origin.settings`` names the key)."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from origin.ladder import Rung, parse_ladder
from origin.manifest_schema import is_region
from origin.sizes import parse_size

Parser = Callable[[object], Any]


def integer(minimum: int, maximum: int) -> Parser:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return parse


def seconds(minimum: float, maximum: float) -> Parser:
    def parse(value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number of seconds, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"expected a number of seconds, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum} seconds, got {value}")
        return float(value)

    return parse


def size(minimum: int, maximum: int) -> Parser:
    def parse(value: object) -> int:
        if not isinstance(value, str | int):
            raise ValueError(f"expected a size such as 256KiB, got {value!r}")
        n = parse_size(value)
        if not minimum <= n <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum} bytes, got {n}")
        return n

    return parse


def text(pattern: str | None = None, hint: str = "") -> Parser:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {hint}")
        return value

    return parse


def structured(value: object, *, secret: bool = False) -> object:
    """Env values for lists and tables are JSON or TOML (``["a","b"]``, ``{k = "v"}``).
    ``secret``: the value holds secrets, so an error must not quote it."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        shown = "a value that is neither (not shown: it holds secrets)" if secret else repr(value)
        raise ValueError(f"expected a JSON or TOML list/table, got {shown}") from None


_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def network(cidr: str) -> str:
    """``cidr`` as the edge matches it. An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``)
    becomes the IPv4 network it names (``10.0.0.0/8``): the edge sees an IPv4 client on a
    dual-stack socket as IPv4, so the mapped form would never match."""
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise ValueError(f"{cidr!r} is not an IP network such as 10.0.0.0/8") from None
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_V4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None  # inside ::ffff:0:0/96
        return str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
    return cidr


def cidr_list(value: object) -> tuple[str, ...]:
    value = structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of CIDR strings, got {value!r}")
    return tuple(network(cidr) for cidr in value)


MIN_SECRET_CHARS = 16


def signing_keys(value: object) -> Mapping[str, str]:
    value = structured(value, secret=True)
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError('expected a table of key id -> secret, such as {k1 = "..."}')
    for kid, secret in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", kid):
            raise ValueError(f"key id {kid!r} is not 1-64 of A-Z a-z 0-9 _ -")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret of key {kid!r} is shorter than {MIN_SECRET_CHARS} characters; "
                f"use a random one, e.g. from: openssl rand -base64 32"
            )
    return dict(value)


def region_table(value: object) -> Mapping[str, str]:
    value = structured(value)
    if not isinstance(value, dict):
        raise ValueError(
            f'expected a table of CIDR -> region, such as {{"10.0.0.0/8" = "SE"}}, got {value!r}'
        )
    table: dict[str, str] = {}
    for cidr, region in value.items():
        if not isinstance(region, str) or not is_region(region):
            raise ValueError(f"{cidr}: {region!r} is not an ISO 3166-1 alpha-2 code such as SE")
        table[network(cidr)] = region
    return table


def region_list(value: object) -> tuple[str, ...]:
    value = structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'expected a list of region codes such as ["SE", "NO"], got {value!r}')
    bad = [v for v in value if not is_region(v)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an ISO 3166-1 alpha-2 code such as SE")
    return tuple(value)


def flag(value: object) -> bool:
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def admin_token(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value and len(value) < MIN_SECRET_CHARS:
        raise ValueError(
            f"the admin token is shorter than {MIN_SECRET_CHARS} characters; use a random "
            "one, e.g. from: openssl rand -base64 32 (or leave it empty: no admin API)"
        )
    return value


def region(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value and not is_region(value):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code such as SE")
    return value


def ladder(value: object) -> tuple[Rung, ...]:
    # Also "vorbis:96,opus:64", as encore-origin's --ladder takes it.
    is_list_text = isinstance(value, str) and value.lstrip().startswith("[")
    value = value.split(",") if isinstance(value, str) and not is_list_text else structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'expected a list of rungs such as ["vorbis:96"], got {value!r}')
    return parse_ladder(value)
