"""Typed, frozen settings loaded from one TOML file with ``ENCORE_<SECTION>__<KEY>`` env overrides.

Every key is declared once, with its default and the parser that validates it. A bad value
stops startup with a :class:`ConfigError` naming the key and the reason.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edge.cache.policies import DEFAULT_POLICY, POLICIES
from origin.ladder import DEFAULT_LADDER, Rung, parse_ladder
from origin.manifest_schema import is_region
from origin.sizes import parse_size

ENV_PREFIX = "ENCORE_"

T = TypeVar("T")
Parser = Callable[[object], Any]


class ConfigError(Exception):
    """A configuration problem, phrased as one line: ``<key>: <reason>``."""


def _setting(default: T, parser: Parser) -> T:
    return field(default=default, metadata={"parse": parser})


# --- value parsers: each takes a TOML value or an env string, returns the typed value ---------


def _integer(minimum: int, maximum: int) -> Parser:
    def parse(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if not minimum <= value <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return parse


def _seconds(minimum: float, maximum: float) -> Parser:
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


def _size(minimum: int, maximum: int) -> Parser:
    def parse(value: object) -> int:
        if not isinstance(value, str | int):
            raise ValueError(f"expected a size such as 256KiB, got {value!r}")
        n = parse_size(value)
        if not minimum <= n <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum} bytes, got {n}")
        return n

    return parse


def _text(pattern: str | None = None, hint: str = "") -> Parser:
    def parse(value: object) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise ValueError(f"{value!r} is not {hint}")
        return value

    return parse


def _structured(value: object, *, secret: bool = False) -> object:
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


def _network(cidr: str) -> str:
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


def _cidr_list(value: object) -> tuple[str, ...]:
    value = _structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of CIDR strings, got {value!r}")
    return tuple(_network(cidr) for cidr in value)


MIN_SECRET_CHARS = 16


def _signing_keys(value: object) -> Mapping[str, str]:
    value = _structured(value, secret=True)
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


def _region_table(value: object) -> Mapping[str, str]:
    value = _structured(value)
    if not isinstance(value, dict):
        raise ValueError(
            f'expected a table of CIDR -> region, such as {{"10.0.0.0/8" = "SE"}}, got {value!r}'
        )
    table: dict[str, str] = {}
    for cidr, region in value.items():
        if not isinstance(region, str) or not is_region(region):
            raise ValueError(f"{cidr}: {region!r} is not an ISO 3166-1 alpha-2 code such as SE")
        table[_network(cidr)] = region
    return table


def _region_list(value: object) -> tuple[str, ...]:
    value = _structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'expected a list of region codes such as ["SE", "NO"], got {value!r}')
    bad = [v for v in value if not is_region(v)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an ISO 3166-1 alpha-2 code such as SE")
    return tuple(value)


def _flag(value: object) -> bool:
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _admin_token(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value and len(value) < MIN_SECRET_CHARS:
        raise ValueError(
            f"the admin token is shorter than {MIN_SECRET_CHARS} characters; use a random "
            "one, e.g. from: openssl rand -base64 32 (or leave it empty: no admin API)"
        )
    return value


def _region(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value and not is_region(value):
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 code such as SE")
    return value


def _ladder(value: object) -> tuple[Rung, ...]:
    # Also "vorbis:96,opus:64", as encore-origin's --ladder takes it.
    is_list_text = isinstance(value, str) and value.lstrip().startswith("[")
    value = value.split(",") if isinstance(value, str) and not is_list_text else _structured(value)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f'expected a list of rungs such as ["vorbis:96"], got {value!r}')
    return parse_ladder(value)


_HOST = r"[A-Za-z0-9.:\-\[\]]+"


# --- sections -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = _setting("0.0.0.0", _text(_HOST, "a host name or IP address"))  # noqa: S104
    port: int = _setting(8080, _integer(0, 65535))
    workers: int = _setting(0, _integer(0, 1024))
    # A connection idle this long, or still short of a whole request head (slowloris), closes.
    idle_timeout_s: float = _setting(15.0, _seconds(1, 3600))
    max_request_line_bytes: int = _setting(4096, _integer(256, 65536))
    max_header_bytes: int = _setting(8190, _integer(256, 65536))  # any one header line
    max_headers: int = _setting(64, _integer(8, 1024))
    # A connection whose queued response bytes make no progress this long is cut.
    send_timeout_s: float = _setting(30.0, _seconds(1, 3600))
    # The kernel's send buffer per client socket (SO_SNDBUF); 0 = the kernel's autotuning,
    # which lets one client that does not read hold megabytes of kernel memory.
    send_buffer_bytes: int = _setting(512 * 1024, _size(0, 64 * 1024**2))
    access_log: bool = _setting(True, _flag)  # one line per request, on stderr


@dataclass(frozen=True, slots=True)
class OriginSettings:
    endpoint_url: str = _setting(
        "http://127.0.0.1:9000", _text(r"(https?://\S+)?", "an http(s) URL or empty")
    )
    bucket: str = _setting(
        "audio", _text(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", "an S3 bucket name")
    )
    region_name: str = _setting("us-east-1", _text(r"[a-z0-9\-]+", "an S3 region name"))
    connect_timeout_s: float = _setting(2.0, _seconds(0.01, 120))
    read_timeout_s: float = _setting(10.0, _seconds(0.01, 600))
    max_connections: int = _setting(64, _integer(1, 10_000))
    # Until the first byte of one origin request, retries and backoff included.
    deadline_s: float = _setting(5.0, _seconds(0.05, 600))
    retries: int = _setting(2, _integer(0, 10))  # extra tries of a GET on a timeout or 5xx
    retry_backoff_s: float = _setting(0.05, _seconds(0, 60))  # first backoff; jittered, doubling
    breaker_failures: int = _setting(5, _integer(1, 1000))  # failures in a row that open it
    breaker_open_s: float = _setting(2.0, _seconds(0.05, 600))  # until a half-open probe


@dataclass(frozen=True, slots=True)
class CacheSettings:
    slice_bytes: int = _setting(256 * 1024, _size(16 * 1024, 64 * 1024**2))
    memory_bytes: int = _setting(512 * 1024**2, _size(0, 2**50))
    disk_path: str = _setting("./var/cache", _text(r".+", "a path"))
    disk_bytes: int = _setting(20 * 1024**3, _size(0, 2**60))
    policy: str = _setting(
        DEFAULT_POLICY, _text("|".join(POLICIES), f"a cache policy ({', '.join(POLICIES)})")
    )
    prefetch_slices: int = _setting(4, _integer(0, 64))  # look-ahead after each rendition read
    prefetch_concurrency: int = _setting(16, _integer(1, 256))  # prefetch GETs at once, per worker
    next_track_slices: int = _setting(2, _integer(0, 16))  # warmed per next-track hint; 0 = off
    max_waiters: int = _setting(4096, _integer(1, 1_000_000))  # per in-flight slice, per worker


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    region: str = _setting("", _region)
    client_region_header: str = _setting(
        "X-Client-Region", _text(r"[A-Za-z0-9\-]+", "an HTTP header name")
    )
    trusted_proxies: tuple[str, ...] = _setting(("127.0.0.0/8",), _cidr_list)
    client_region_cidrs: Mapping[str, str] = field(
        default_factory=dict, metadata={"parse": _region_table}
    )
    metric_regions: tuple[str, ...] = _setting((), _region_list)  # labelled besides the above
    manifest_ttl_s: float = _setting(60.0, _seconds(0, 86_400))
    manifest_cache_bytes: int = _setting(64 * 1024**2, _size(0, 2**40))
    manifest_stale_while_revalidate_s: float = _setting(30.0, _seconds(0, 86_400))
    manifest_stale_if_error_s: float = _setting(600.0, _seconds(0, 7 * 86_400))
    negative_ttl_s: float = _setting(5.0, _seconds(0, 3600))  # unknown ids, missing objects


@dataclass(frozen=True, slots=True)
class AuthSettings:
    signing_keys: Mapping[str, str] = field(default_factory=dict, metadata={"parse": _signing_keys})
    # None: signed URLs are required exactly when there are keys. Saying it outright guards a
    # reload: one that would drop the last key is refused unless this is false.
    require_signatures: bool | None = _setting(None, _flag)
    clock_skew_s: float = _setting(30.0, _seconds(0, 3600))  # accepted past a URL's exp
    max_ttl_s: float = _setting(7 * 86_400.0, _seconds(60, 366 * 86_400))  # longest URL lifetime
    bind_region: bool = _setting(False, _flag)  # the signature covers the client's region

    def check(self) -> None:
        """The keys and ``require_signatures`` must agree (a ConfigError says how not)."""
        if self.require_signatures is True and not self.signing_keys:
            raise ConfigError(
                "auth.require_signatures: true, but auth.signing_keys is empty: add a key"
            )
        if self.require_signatures is False and self.signing_keys:
            raise ConfigError(
                "auth.require_signatures: false, but auth.signing_keys has keys: remove them "
                "to turn signed URLs off, or drop require_signatures"
            )


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str = _setting("127.0.0.1", _text(_HOST, "a host name or IP address"))
    port: int = _setting(8081, _integer(0, 65535))
    token: str = _setting("", _admin_token)  # empty = no admin API


@dataclass(frozen=True, slots=True)
class IngestSettings:
    ladder: tuple[Rung, ...] = _setting(parse_ladder(DEFAULT_LADDER), _ladder)
    # S3 takes parts of 5 MiB to 5 GiB; objects larger than one part use multipart upload.
    part_bytes: int = _setting(16 * 1024**2, _size(5 * 1024**2, 5 * 1024**3))


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    origin: OriginSettings = field(default_factory=OriginSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)

    def check_serving(self) -> None:
        """Keys that only an edge node that serves traffic must have."""
        if not self.edge.region:
            raise ConfigError(
                "edge.region: required: this node's home region, an ISO 3166-1 alpha-2 code"
            )
        if self.cache.prefetch_concurrency >= self.origin.max_connections:
            raise ConfigError(
                f"cache.prefetch_concurrency: must be below origin.max_connections "
                f"({self.origin.max_connections}), so demand fetches always find a connection"
            )


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "origin": OriginSettings,
    "cache": CacheSettings,
    "edge": EdgeSettings,
    "auth": AuthSettings,
    "admin": AdminSettings,
    "ingest": IngestSettings,
}


def load_settings(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if given), apply env overrides, validate every key."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(Path(path))
    overrides = _env_overrides(os.environ if env is None else env)
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = raw.pop(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a [{name}] table")
        sections[name] = _build_section(name, cls, table, overrides.get(name, {}))
    if raw:
        unknown = ", ".join(sorted(raw))
        raise ConfigError(f"{unknown}: unknown section (known: {', '.join(_SECTIONS)})")
    settings = Settings(**sections)
    settings.auth.check()
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    """``ENCORE_CACHE__MEMORY_BYTES=1GiB`` -> {"cache": {"memory_bytes": (var name, "1GiB")}}."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        section, _, key = var[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        cls = _SECTIONS.get(section)
        if cls is None or key not in {f.name for f in dataclasses.fields(cls)}:
            raise ConfigError(f"{var}: no such setting {section}.{key}")
        found.setdefault(section, {})[key] = (var, value)
    return found


def _build_section(
    name: str, cls: type[Any], table: dict[str, Any], overrides: dict[str, tuple[str, str]]
) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown setting (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for key, spec in known.items():
        parse: Parser = spec.metadata["parse"]
        if key in overrides:
            source, value = f"{overrides[key][0]} ({name}.{key})", overrides[key][1]
        elif key in table:
            source, value = f"{name}.{key}", table[key]
        else:
            continue
        try:
            values[key] = parse(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return cls(**values)
