"""Settings: defaults, TOML and env overrides, one-line errors naming the key, exact sizes,
ranges of every key, and keys that must agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
KEY = '{ k1 = "0123456789abcdef-k1" }'  # a valid signing key table


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
        # auth.require_signatures must agree with the keys
        (
            "[auth]\nrequire_signatures = true\n",
            {},
            "auth.require_signatures: true, but auth.signing_keys is empty",
        ),
        (
            "",
            {"ENCORE_AUTH__REQUIRE_SIGNATURES": "true"},
            "auth.require_signatures: true, but auth.signing_keys is empty",
        ),
        (
            f"[auth]\nsigning_keys = {KEY}\nrequire_signatures = false\n",
            {},
            "auth.require_signatures: false, but auth.signing_keys has keys",
        ),
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


def test_the_hardening_keys_have_their_defaults() -> None:
    settings = load_settings(None, env={})
    assert settings.server.send_timeout_s == 30.0
    assert settings.server.send_buffer_bytes == 512 * 1024
    assert settings.cache.next_track_slices == 2
    assert settings.auth.max_ttl_s == 7 * 86_400
    assert settings.auth.require_signatures is None


@pytest.mark.parametrize(
    ("text", "section", "key", "value"),
    [
        ("[server]\nsend_timeout_s = 1\n", "server", "send_timeout_s", 1.0),
        ("[server]\nsend_timeout_s = 3600\n", "server", "send_timeout_s", 3600.0),
        ("[server]\nsend_buffer_bytes = 0\n", "server", "send_buffer_bytes", 0),
        ('[server]\nsend_buffer_bytes = "64MiB"\n', "server", "send_buffer_bytes", 64 * 1024**2),
        ("[cache]\nnext_track_slices = 0\n", "cache", "next_track_slices", 0),
        ("[cache]\nnext_track_slices = 16\n", "cache", "next_track_slices", 16),
        ("[auth]\nmax_ttl_s = 60\n", "auth", "max_ttl_s", 60.0),
        ("[auth]\nmax_ttl_s = 31622400\n", "auth", "max_ttl_s", 366 * 86_400.0),
    ],
    ids=[
        "send_timeout_min",
        "send_timeout_max",
        "send_buffer_off",
        "send_buffer_max",
        "next_track_off",
        "next_track_max",
        "max_ttl_min",
        "max_ttl_max",
    ],
)
def test_the_hardening_keys_take_their_whole_range(
    tmp_path: Path, text: str, section: str, key: str, value: object
) -> None:
    settings = load_settings(_write(tmp_path, text), env={})
    assert getattr(getattr(settings, section), key) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nsend_timeout_s = 0\n", "server.send_timeout_s: must be between 1 and 3600"),
        ("[server]\nsend_timeout_s = 3601\n", "server.send_timeout_s: must be between 1 and"),
        (
            '[server]\nsend_buffer_bytes = "65MiB"\n',
            "server.send_buffer_bytes: must be between 0 and 67108864 bytes",
        ),
        ("[cache]\nnext_track_slices = 17\n", "cache.next_track_slices: must be between 0 and 16"),
        ("[cache]\nnext_track_slices = -1\n", "cache.next_track_slices: must be between 0 and"),
        ("[auth]\nmax_ttl_s = 59\n", "auth.max_ttl_s: must be between 60 and 31622400 seconds"),
        ("[auth]\nmax_ttl_s = 31622401\n", "auth.max_ttl_s: must be between 60 and 31622400"),
        ("[auth]\nrequire_signatures = 1\n", "auth.require_signatures: expected true or false"),
    ],
    ids=[
        "send_timeout_0",
        "send_timeout_3601",
        "send_buffer_65MiB",
        "next_track_17",
        "next_track_-1",
        "max_ttl_59",
        "max_ttl_367d",
        "require_1",
    ],
)
def test_the_hardening_keys_refuse_values_out_of_range(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), env={})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "env", "required"),
    [
        (f"[auth]\nsigning_keys = {KEY}\n", {}, None),
        (f"[auth]\nsigning_keys = {KEY}\nrequire_signatures = true\n", {}, True),
        ("[auth]\nrequire_signatures = false\n", {}, False),
        ("", {"ENCORE_AUTH__REQUIRE_SIGNATURES": "false"}, False),
    ],
    ids=["keys_unset", "keys_true", "no_keys_false", "env_false"],
)
def test_require_signatures_loads_when_it_agrees_with_the_keys(
    tmp_path: Path, text: str, env: dict[str, str], required: bool | None
) -> None:
    assert load_settings(_write(tmp_path, text), env=env).auth.require_signatures is required


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ('[admin]\ntoken = "short"\n', {}),
        ('[admin]\ntoken = "fifteen-chars.."\n', {}),
        ("", {"ENCORE_ADMIN__TOKEN": "x"}),
    ],
    ids=["5_chars", "15_chars", "env_1_char"],
)
def test_an_admin_token_shorter_than_16_characters_is_refused(
    tmp_path: Path, text: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text), env=env)
    message = str(caught.value)
    assert message.startswith(("admin.token: ", "ENCORE_ADMIN__TOKEN (admin.token): "))
    assert "the admin token is shorter than 16 characters" in message
    token = env.get("ENCORE_ADMIN__TOKEN") or text.split('"')[1]
    assert f"'{token}'" not in message  # the (too short) secret is not printed
    assert "\n" not in message
    # Sixteen characters, or none at all (no admin API), load.
    assert load_settings(None, env={"ENCORE_ADMIN__TOKEN": "sixteen-chars..."}).admin.token
    assert load_settings(None, env={"ENCORE_ADMIN__TOKEN": ""}).admin.token == ""


def test_sizes_in_the_config_are_exact(tmp_path: Path) -> None:
    path = _write(tmp_path, '[cache]\ndisk_bytes = "9007199254740993"\nmemory_bytes = "1.5KiB"\n')
    settings = load_settings(path, env={})
    assert settings.cache.disk_bytes == 2**53 + 1  # not rounded through a float
    assert settings.cache.memory_bytes == 1536
    env = {"ENCORE_CACHE__DISK_BYTES": "9007199254740993B"}
    assert load_settings(None, env=env).cache.disk_bytes == 2**53 + 1


@pytest.mark.parametrize("size", ["0.5B", "1.0001KiB"])
def test_a_size_that_is_not_whole_bytes_is_a_config_error(tmp_path: Path, size: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, f'[cache]\nmemory_bytes = "{size}"\n'), env={})
    assert f"cache.memory_bytes: '{size}' is not a whole number of bytes" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env={"ENCORE_CACHE__MEMORY_BYTES": size})
    assert "ENCORE_CACHE__MEMORY_BYTES (cache.memory_bytes): " in str(caught.value)
    assert "is not a whole number of bytes" in str(caught.value)


def test_v4_mapped_networks_become_the_ipv4_networks_they_name(tmp_path: Path) -> None:
    env = {
        "ENCORE_EDGE__TRUSTED_PROXIES": (
            '["::ffff:127.0.0.0/104", "::ffff:10.1.2.3/128", "::ffff:0:0/96", "10.0.0.0/8",'
            ' "fd00::/8", "::ffff:10.9.9.9/104"]'
        )
    }
    assert load_settings(None, env=env).edge.trusted_proxies == (
        "127.0.0.0/8",
        "10.1.2.3/32",
        "0.0.0.0/0",
        "10.0.0.0/8",
        "fd00::/8",
        "10.0.0.0/8",  # host bits dropped, as for any network
    )
    path = _write(
        tmp_path,
        '[edge]\nclient_region_cidrs = { "::ffff:192.0.2.0/120" = "NO", '
        '"::FFFF:198.51.100.7/128" = "DK", "2001:db8::/32" = "FI" }\n',
    )
    assert load_settings(path, env={}).edge.client_region_cidrs == {
        "192.0.2.0/24": "NO",
        "198.51.100.7/32": "DK",
        "2001:db8::/32": "FI",
    }


def test_a_malformed_key_table_is_refused_without_quoting_its_secrets() -> None:
    secret = "supersecretvalue-0123"
    with pytest.raises(ConfigError) as refused:
        load_settings(None, env={"ENCORE_AUTH__SIGNING_KEYS": f'{{k1 = "{secret}"'})
    assert "auth.signing_keys" in str(refused.value)
    assert secret not in str(refused.value)
