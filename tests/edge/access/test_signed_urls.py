"""Signed URLs: the scheme against an independent HMAC (openssl), every refusal with its own
code and none reaching the origin, key rotation, region binding, clock skew, a strict ``exp``,
the longest lifetime a URL may have (``auth.max_ttl_s``), and ``encore-edge sign`` minting URLs
a real edge accepts."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from edge.access.signing import SignatureCheck, signature, signed_query
from edge.http.errors import Forbidden
from origin.settings import load_settings
from tests.conftest import Catalog
from tests.support.edge_server import Counters, EdgeServer
from tests.support.tcp_proxy import TcpProxy

OLD, NEW = "old-0123456789abcdef", "new-fedcba9876543210"
KEYS = {"k-old": OLD, "k-new": NEW}
SKEW_S = 30
WEEK_S = 7 * 86_400  # auth.max_ttl_s by default


def test_the_signature_matches_an_independent_hmac() -> None:
    # printf '/v1/tracks/abc/160\n1700000000' | openssl dgst -sha256 -hmac 0123456789abcdef0123
    #   -binary | base64 | tr '+/' '-_' | tr -d '='   (and with "\nNO" for the bound region)
    secret = "0123456789abcdef0123"
    expected = "M6XVZy-35k5jdIKjw51N-BdSSPEqEvn4fn0DSr7r0xU"
    assert signature(secret, "/v1/tracks/abc/160", 1700000000) == expected
    bound = "SNF9gZJOivK941PxvmJDk-iO1YJetFM3P8BEipZGx04"
    assert signature(secret, "/v1/tracks/abc/160", 1700000000, "NO") == bound


@pytest.fixture
def signed_edge(proxy: TcpProxy, start_edge: Callable[..., EdgeServer]) -> EdgeServer:
    return start_edge(
        origin_url=proxy.url, auth={"signing_keys": KEYS, "clock_skew_s": float(SKEW_S)}
    )


def _signed(path: str, *, exp: int | None = None, kid: str = "k-new", secret: str = NEW) -> str:
    exp = int(time.time()) + 300 if exp is None else exp
    return f"{path}?{signed_query(secret, kid, path, exp)}"


def _refusal(edge: EdgeServer, url: str) -> str:
    reply = edge.get(url)
    assert reply.status == 403, (url, reply.status)
    return str(json.loads(reply.body)["error"])


def test_every_bad_signature_is_a_403_with_its_own_code_and_no_origin_request(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    other = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    good = _signed(path)
    query = parse_qs(urlsplit(good).query)
    exp, sig = query["exp"][0], query["sig"][0]
    now = int(time.time())
    edge = signed_edge
    counters = Counters(edge)
    before = len(proxy.requests)

    cases = {
        path: "signature_missing",
        f"{path}?exp={exp}&kid=k-new": "signature_missing",
        f"{path}?kid=k-new&sig={sig}": "signature_missing",
        # tampered path: a signature for one track used on another
        f"/v1/tracks/{other.track_id}/160?{urlsplit(good).query}": "signature_invalid",
        f"/v1/tracks/{manifest.track_id}/96?{urlsplit(good).query}": "signature_invalid",
        f"/v1/tracks/{manifest.track_id}?{urlsplit(good).query}": "signature_invalid",
        # tampered exp, later or earlier, or not a number
        f"{path}?exp={int(exp) + 3600}&kid=k-new&sig={sig}": "signature_invalid",
        f"{path}?exp={int(exp) - 1}&kid=k-new&sig={sig}": "signature_invalid",
        f"{path}?exp=1e9&kid=k-new&sig={sig}": "signature_invalid",
        f"{path}?exp=-5&kid=k-new&sig={sig}": "signature_invalid",
        f"{path}?exp={exp}&kid=k-new&sig={sig[:-2]}": "signature_invalid",
        f"{path}?exp={exp}&kid=k-new&sig=%C3%A9{sig}": "signature_invalid",
        f"{path}?exp={exp}&exp={exp}&kid=k-new&sig={sig}": "signature_invalid",
        # signed with the right key but under the wrong id, or an id nobody has
        f"{path}?exp={exp}&kid=k-old&sig={sig}": "signature_invalid",
        f"{path}?exp={exp}&kid=k-gone&sig={sig}": "signature_unknown_key",
        _signed(path, kid="k-new", secret="not-the-secret-at-all"): "signature_invalid",
        # expired beyond the allowed skew
        _signed(path, exp=now - SKEW_S - 5): "signature_expired",
        _signed(path, exp=now - 86_400): "signature_expired",
    }
    for url, code in cases.items():
        assert _refusal(edge, url) == code, url
    assert len(proxy.requests) == before  # nothing reached the origin
    for code in set(cases.values()):
        expected = sum(1 for c in cases.values() if c == code)
        assert counters.delta("encore_signature_rejections_total", reason=code) == expected

    # Within the skew, the old key during a rotation, and extra query keys: all accepted.
    assert edge.get(_signed(path, exp=now - SKEW_S + 10)).status == 200
    assert edge.get(_signed(path, kid="k-old", secret=OLD)).status == 200
    assert edge.get(_signed(path) + "&utm=x").status == 200
    manifest_path = f"/v1/tracks/{manifest.track_id}"
    assert edge.get(_signed(manifest_path)).status == 200
    # Probes, metrics and CORS preflights need no signature.
    assert edge.get("/healthz").status == 200
    assert edge.request("OPTIONS", path).status == 204


def _hmac_over(secret: str, path: str, exp_text: str) -> str:
    """The signature of ``exp_text`` exactly as written (``signature`` takes an int)."""
    digest = hmac.new(secret.encode(), f"{path}\n{exp_text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_exp_is_whole_unix_seconds_of_at_most_12_digits_without_a_leading_zero(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    exp = int(time.time()) + 300
    counters = Counters(signed_edge)
    before = len(proxy.requests)

    def url(exp_text: str, sig: str) -> str:
        return f"{path}?exp={exp_text}&kid=k-new&sig={sig}"

    far = str(10**12)  # 13 digits, and the HMAC is right for it
    padded = f"0{exp}"  # the same moment with a leading zero
    refused = [
        url(far, _hmac_over(NEW, path, far)),
        url(padded, _hmac_over(NEW, path, padded)),
        url(padded, signature(NEW, path, exp)),  # the HMAC of the number it reads as
        url("0", _hmac_over(NEW, path, "0")),
        url(f"00{exp}", signature(NEW, path, exp)),
    ]
    for bad in refused:
        assert _refusal(signed_edge, bad) == "signature_invalid", bad
    assert len(proxy.requests) == before
    assert counters.delta("encore_signature_rejections_total", reason="signature_invalid") == len(
        refused
    )
    assert signed_edge.get(url(str(exp), signature(NEW, path, exp))).status == 200


def test_a_url_that_lives_longer_than_max_ttl_is_refused(
    catalog: Catalog, proxy: TcpProxy, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    now = int(time.time())
    counters = Counters(signed_edge)
    before = len(proxy.requests)

    too_long = [now + WEEK_S + SKEW_S + 60, now + 366 * 86_400, 99_999_999_999]
    for exp in too_long:
        reply = signed_edge.get(_signed(path, exp=exp))
        assert reply.status == 403, exp
        doc = json.loads(reply.body)
        assert doc["error"] == "signature_lifetime_exceeded"
        assert "604800 s" in doc["message"]
    assert len(proxy.requests) == before  # refused before anything reached the origin
    lifetime = {"reason": "signature_lifetime_exceeded"}
    assert counters.delta("encore_signature_rejections_total", **lifetime) == len(too_long)
    # A URL of exactly the longest lifetime is good (a second of clock drift is in the skew).
    assert signed_edge.get(_signed(path, exp=now + WEEK_S)).status == 200


def test_max_ttl_s_sets_the_longest_lifetime(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(auth={"signing_keys": KEYS, "clock_skew_s": 0.0, "max_ttl_s": 3600.0})
    now = int(time.time())
    assert edge.get(_signed(path, exp=now + 3600)).status == 200
    assert _refusal(edge, _signed(path, exp=now + 3600 + 5)) == "signature_lifetime_exceeded"
    # The lifetime is checked after the signature: a forged exp learns nothing from it.
    forged = _signed(path, exp=now + 3600 + 5, secret="not-the-secret-at-all")
    assert _refusal(edge, forged) == "signature_invalid"


def test_a_region_bound_signature_holds_only_in_that_region(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    edge = start_edge(auth={"signing_keys": KEYS, "bind_region": True})
    exp = int(time.time()) + 300
    url = f"{path}?{signed_query(NEW, 'k-new', path, exp, 'NO')}"
    assert edge.get(url, X_Client_Region="NO").status == 200
    assert json.loads(edge.get(url, X_Client_Region="DK").body)["error"] == "signature_invalid"
    assert edge.get(url).status == 403  # no header: the node's region, SE


def _write_config(tmp_path: Path, keys: dict[str, str], bind_region: bool = False) -> Path:
    table = ", ".join(f'{kid} = "{secret}"' for kid, secret in keys.items())
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[edge]\nregion = "SE"\n[auth]\nsigning_keys = {{ {table} }}\n'
        f"bind_region = {str(bind_region).lower()}\n"
    )
    return config


def _sign_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "sign", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sign_command_mints_urls_the_edge_accepts(
    tmp_path: Path, catalog: Catalog, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    config = _write_config(tmp_path, KEYS)
    minted = _sign_cli("--config", str(config), path, "--kid", "k-old", "--ttl", "60")
    assert minted.returncode == 0, minted.stderr
    url = minted.stdout.strip()
    assert url.startswith(f"{path}?exp=")
    assert signed_edge.get(url).status == 200
    exp = int(parse_qs(urlsplit(url).query)["exp"][0])
    assert 0 < exp - time.time() <= 61


@pytest.mark.parametrize(
    ("keys", "bind", "args", "message"),
    [
        ({}, False, ["/v1/tracks/a/160"], "auth.signing_keys is empty"),
        (KEYS, False, ["/v1/tracks/a/160"], "several keys: choose one with --kid (k-old, k-new)"),
        (KEYS, False, ["/v1/tracks/a/160", "--kid", "k3"], "no key 'k3'"),
        ({"k": NEW}, False, ["/v1/tracks/../160"], "is not a track path"),
        ({"k": NEW}, False, ["/v1/tracks/a/160?x=1"], "is not a track path"),
        ({"k": NEW}, False, ["/v1/tracks/a", "--ttl", "0"], "--ttl must be 1 to"),
        ({"k": NEW}, True, ["/v1/tracks/a"], "give the client's region with --region"),
        ({"k": NEW}, True, ["/v1/tracks/a", "--region", "Sweden"], "--region 'Sweden' is not"),
        ({"k": NEW}, False, ["/v1/tracks/a", "--region", "SE"], "only for auth.bind_region"),
    ],
)
def test_sign_command_errors_are_one_line(
    tmp_path: Path, keys: dict[str, str], bind: bool, args: list[str], message: str
) -> None:
    config = tmp_path / "edge.toml"
    if keys:
        config = _write_config(tmp_path, keys, bind)
    else:
        config.write_text('[edge]\nregion = "SE"\n')
    result = _sign_cli("--config", str(config), *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("encore-edge sign: ")
    assert message in result.stderr


def test_a_remembered_url_still_expires_and_still_needs_its_key() -> None:
    """The memo of verified URLs skips the HMAC of a URL seen before, never a check that
    time or a key rotation can change."""
    auth = load_settings(None, env={}).auth
    check = SignatureCheck(dataclasses.replace(auth, signing_keys={"k1": "s" * 20}))
    path, exp = "/v1/tracks/t/160", 2_000_000_000
    query = signed_query("s" * 20, "k1", path, exp)
    check.verify_target(path, query, "SE", now=exp - 60)
    check.verify_target(path, query, "SE", now=exp - 30)  # remembered
    with pytest.raises(Forbidden) as expired:
        check.verify_target(path, query, "SE", now=exp + auth.clock_skew_s + 1)
    assert expired.value.code == "signature_expired"
    forged = query.replace("sig=", "sig=x")
    with pytest.raises(Forbidden):
        check.verify_target(path, forged, "SE", now=exp - 60)
    check.update(dataclasses.replace(auth, signing_keys={"k2": "t" * 20}))  # k1 rotated out
    with pytest.raises(Forbidden) as unknown:
        check.verify_target(path, query, "SE", now=exp - 60)
    assert unknown.value.code == "signature_unknown_key"
