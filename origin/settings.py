"""Typed, frozen settings loaded from one TOML file with ``ENCORE_<SECTION>__<KEY>`` env overrides.

Every key is declared once, with its default and the parser that validates it. A bad value
stops startup with a :class:`ConfigError` naming the key and the reason.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from origin import setting_values as values
from origin.ladder import DEFAULT_LADDER, Rung, parse_ladder

ENV_PREFIX = "ENCORE_"

Parser = values.Parser
# The memory and disk tiers' eviction policies (edge.cache.policies implements them).
POLICIES = ("s3fifo", "lru")
DEFAULT_POLICY = "s3fifo"


class ConfigError(Exception):
    """A configuration problem, phrased as one line: ``<key>: <reason>``."""


def _setting[T](default: T, parser: Parser) -> T:
    return field(default=default, metadata={"parse": parser})


_HOST = r"[A-Za-z0-9.:\-\[\]]+"


# --- sections -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = _setting("0.0.0.0", values.text(_HOST, "a host name or IP address"))  # noqa: S104
    port: int = _setting(8080, values.integer(0, 65535))
    workers: int = _setting(0, values.integer(0, 1024))
    # A connection idle this long between requests closes.
    idle_timeout_s: float = _setting(15.0, values.seconds(1, 3600))
    # A request head begun must be complete within this (slowloris clients get a 408).
    request_head_timeout_s: float = _setting(10.0, values.seconds(0.1, 3600))
    max_request_line_bytes: int = _setting(4096, values.integer(256, 65536))
    max_header_bytes: int = _setting(8190, values.integer(256, 65536))  # any one header line
    max_headers: int = _setting(64, values.integer(8, 1024))
    # A connection whose queued response bytes make no progress this long is cut.
    send_timeout_s: float = _setting(30.0, values.seconds(1, 3600))
    # The kernel's send buffer per client socket (SO_SNDBUF); 0 = the kernel's autotuning,
    # which lets one client that does not read hold megabytes of kernel memory.
    send_buffer_bytes: int = _setting(512 * 1024, values.size(0, 64 * 1024**2))
    access_log: bool = _setting(True, values.flag)  # one line per request
    access_log_format: str = _setting("text", values.text("text|json", "text or json"))
    # A file, appended to (reopened on SIGUSR1); empty = stderr.
    access_log_path: str = _setting("", values.text(r"[^\x00]*", "a file path"))


@dataclass(frozen=True, slots=True)
class OriginSettings:
    endpoint_url: str = _setting(
        "http://127.0.0.1:9000", values.text(r"(https?://\S+)?", "an http(s) URL or empty")
    )
    bucket: str = _setting(
        "audio", values.text(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", "an S3 bucket name")
    )
    region_name: str = _setting("us-east-1", values.text(r"[a-z0-9\-]+", "an S3 region name"))
    connect_timeout_s: float = _setting(2.0, values.seconds(0.01, 120))
    read_timeout_s: float = _setting(10.0, values.seconds(0.01, 600))
    max_connections: int = _setting(64, values.integer(1, 10_000))
    # Until the first byte of one origin request, retries and backoff included.
    deadline_s: float = _setting(5.0, values.seconds(0.05, 600))
    retries: int = _setting(2, values.integer(0, 10))  # extra tries of a GET on a timeout or 5xx
    # first backoff; jittered, doubling
    retry_backoff_s: float = _setting(0.05, values.seconds(0, 60))
    breaker_failures: int = _setting(5, values.integer(1, 1000))  # failures in a row that open it
    breaker_open_s: float = _setting(2.0, values.seconds(0.05, 600))  # until a half-open probe


@dataclass(frozen=True, slots=True)
class CacheSettings:
    slice_bytes: int = _setting(256 * 1024, values.size(16 * 1024, 64 * 1024**2))
    memory_bytes: int = _setting(512 * 1024**2, values.size(0, 2**50))
    disk_path: str = _setting("./var/cache", values.text(r".+", "a path"))
    disk_bytes: int = _setting(20 * 1024**3, values.size(0, 2**60))
    policy: str = _setting(
        DEFAULT_POLICY, values.text("|".join(POLICIES), f"a cache policy ({', '.join(POLICIES)})")
    )
    # look-ahead after each rendition read
    prefetch_slices: int = _setting(4, values.integer(0, 64))
    # prefetch GETs at once, per worker
    prefetch_concurrency: int = _setting(16, values.integer(1, 256))
    # warmed per next-track hint; 0 = off
    next_track_slices: int = _setting(2, values.integer(0, 16))
    # per in-flight slice, per worker
    max_waiters: int = _setting(4096, values.integer(1, 1_000_000))


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    region: str = _setting("", values.region)
    client_region_header: str = _setting(
        "X-Client-Region", values.text(r"[A-Za-z0-9\-]+", "an HTTP header name")
    )
    trusted_proxies: tuple[str, ...] = _setting(("127.0.0.0/8",), values.cidr_list)
    client_region_cidrs: Mapping[str, str] = field(
        default_factory=dict, metadata={"parse": values.region_table}
    )
    metric_regions: tuple[str, ...] = _setting((), values.region_list)  # labelled besides the above
    manifest_ttl_s: float = _setting(60.0, values.seconds(0, 86_400))
    manifest_cache_bytes: int = _setting(64 * 1024**2, values.size(0, 2**40))
    manifest_stale_while_revalidate_s: float = _setting(30.0, values.seconds(0, 86_400))
    manifest_stale_if_error_s: float = _setting(600.0, values.seconds(0, 7 * 86_400))
    negative_ttl_s: float = _setting(5.0, values.seconds(0, 3600))  # unknown ids, missing objects


@dataclass(frozen=True, slots=True)
class AuthSettings:
    signing_keys: Mapping[str, str] = field(
        default_factory=dict, metadata={"parse": values.signing_keys}
    )
    # None: signed URLs are required exactly when there are keys. Saying it outright guards a
    # reload: one that would drop the last key is refused unless this is false.
    require_signatures: bool | None = _setting(None, values.flag)
    clock_skew_s: float = _setting(30.0, values.seconds(0, 3600))  # accepted past a URL's exp
    # longest URL lifetime
    max_ttl_s: float = _setting(7 * 86_400.0, values.seconds(60, 366 * 86_400))
    bind_region: bool = _setting(False, values.flag)  # the signature covers the client's region

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
    host: str = _setting("127.0.0.1", values.text(_HOST, "a host name or IP address"))
    port: int = _setting(8081, values.integer(0, 65535))
    token: str = _setting("", values.admin_token)  # empty = no admin API


@dataclass(frozen=True, slots=True)
class IngestSettings:
    ladder: tuple[Rung, ...] = _setting(parse_ladder(DEFAULT_LADDER), values.ladder)
    # S3 takes parts of 5 MiB to 5 GiB; objects larger than one part use multipart upload.
    part_bytes: int = _setting(16 * 1024**2, values.size(5 * 1024**2, 5 * 1024**3))


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
