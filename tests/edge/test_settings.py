from __future__ import annotations

from pathlib import Path

import pytest

from edge.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_design() -> None:
    settings = load_settings(None, env={})
    assert (settings.server.host, settings.server.port, settings.server.workers) == (
        "0.0.0.0",
        8080,
        0,
    )
    assert settings.origin.bucket == "audio"
    assert settings.cache.slice_bytes == 256 * 1024
    assert settings.cache.memory_bytes == 512 * 1024**2
    assert settings.cache.disk_bytes == 20 * 1024**3
    assert settings.edge.trusted_proxies == ("127.0.0.0/8",)
    assert settings.auth.signing_keys == {}
    assert settings.admin.token == ""


def test_reads_toml_with_sizes(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[cache]\nslice_bytes = "128KiB"\nmemory_bytes = "1GB"\n[edge]\nregion = "NO"\n'
        '[auth]\nsigning_keys = { k1 = "s3cret-0123456789" }\n',
    )
    settings = load_settings(path, env={})
    assert settings.cache.slice_bytes == 128 * 1024
    assert settings.cache.memory_bytes == 10**9
    assert settings.edge.region == "NO"
    assert settings.auth.signing_keys == {"k1": "s3cret-0123456789"}


def test_env_overrides_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[server]\nport = 8000\n")
    env = {
        "ENCORE_SERVER__PORT": "9090",
        "ENCORE_CACHE__MEMORY_BYTES": "64MiB",
        "ENCORE_EDGE__TRUSTED_PROXIES": '["10.0.0.0/8", "192.168.0.0/16"]',
        "ENCORE_AUTH__SIGNING_KEYS": '{k2 = "abc-0123456789abcdef"}',
        "ENCORE_TEST_S3_ENDPOINT": "ignored: not a section__key variable",
    }
    settings = load_settings(path, env=env)
    assert settings.server.port == 9090
    assert settings.cache.memory_bytes == 64 * 1024**2
    assert settings.edge.trusted_proxies == ("10.0.0.0/8", "192.168.0.0/16")
    assert settings.auth.signing_keys == {"k2": "abc-0123456789abcdef"}


def test_settings_are_frozen() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[server]\nport = 70000\n", {}, "server.port: must be between 0 and 65535"),
        ('[server]\nport = "eighty"\n', {}, "server.port: expected an integer"),
        ('[cache]\nslice_bytes = "1KiB"\n', {}, "cache.slice_bytes: must be between"),
        ('[cache]\nmemory_bytes = "lots"\n', {}, "cache.memory_bytes: expected a size"),
        ('[edge]\nregion = "Sweden"\n', {}, "edge.region: 'Sweden' is not an ISO 3166-1"),
        ('[edge]\nregion = "XX"\n', {}, "edge.region: 'XX' is not an ISO 3166-1"),
        ('[edge]\nregion = "se"\n', {}, "edge.region: 'se' is not an ISO 3166-1"),
        ('[ingest]\nladder = "vorbis:96,mp3:1"\n', {}, "ingest.ladder: 'mp3:1': unknown codec"),
        ("[ingest]\nladder = [96]\n", {}, "ingest.ladder: expected a list of rungs"),
        (
            '[cache]\npolicy = "arc"\n',
            {},
            "cache.policy: 'arc' is not a cache policy (s3fifo, lru)",
        ),
        ('[edge]\ntrusted_proxies = ["nope"]\n', {}, "edge.trusted_proxies: 'nope' is not an IP"),
        ("[server]\nprot = 1\n", {}, "server.prot: unknown setting"),
        ("[servers]\nport = 1\n", {}, "servers: unknown section"),
        ("[server\n", {}, "invalid TOML"),
        ("", {"ENCORE_SERVER__PROT": "1"}, "ENCORE_SERVER__PROT: no such setting server.prot"),
        (
            "",
            {"ENCORE_SERVER__PORT": "x"},
            "ENCORE_SERVER__PORT (server.port): expected an integer",
        ),
        ('[origin]\nbucket = "A_B"\n', {}, "origin.bucket: 'A_B' is not an S3 bucket name"),
        ("[auth]\nsigning_keys = { k = 1 }\n", {}, "auth.signing_keys: expected a table"),
        ('[auth]\nsigning_keys = { k = "short" }\n', {}, "secret of key 'k' is shorter than 16"),
        (
            '[auth]\nsigning_keys = { "a b" = "0123456789abcdef" }\n',
            {},
            "key id 'a b' is not 1-64 of",
        ),
        ("[auth]\nbind_region = 1\n", {}, "auth.bind_region: expected true or false"),
        (
            '[edge]\nclient_region_cidrs = { "10.0.0.0/8" = "XX" }\n',
            {},
            "edge.client_region_cidrs: 10.0.0.0/8: 'XX' is not an ISO 3166-1",
        ),
        (
            '[edge]\nclient_region_cidrs = { "10.0.0/8" = "SE" }\n',
            {},
            "edge.client_region_cidrs: '10.0.0/8' is not an IP network",
        ),
        ('[edge]\nmetric_regions = ["SE", "se"]\n', {}, "edge.metric_regions: 'se' is not"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), env=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings("/nonexistent/edge.toml", env={})


def test_serving_needs_a_region() -> None:
    with pytest.raises(ConfigError, match=r"edge\.region: required"):
        load_settings(None, env={}).check_serving()


def test_prefetch_cannot_take_every_origin_connection() -> None:
    env = {"ENCORE_EDGE__REGION": "SE", "ENCORE_CACHE__PREFETCH_CONCURRENCY": "64"}
    with pytest.raises(ConfigError, match=r"cache\.prefetch_concurrency: must be below origin"):
        load_settings(None, env=env).check_serving()


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "config").glob("*.toml")) + sorted((ROOT / "config/regions").glob("*.toml")),
)
def test_shipped_configs_load(path: Path) -> None:
    settings = load_settings(path, env={})
    settings.check_serving()


def test_regions_are_shipped() -> None:
    assert len(list((ROOT / "config/regions").glob("*.toml"))) >= 2
