"""Listeners sign URLs with the edge's own code and config; the edge's own check accepts them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from multidict import MultiDict

from edge.access.signing import SignatureCheck
from loadtests.listener_signing import UrlSigner, edge_access
from origin.settings import load_settings
from tests.support.clock import ManualClock

CONFIG = """
[edge]
region = "SE"
client_region_header = "X-Viewer-Country"
[auth]
signing_keys = {old = "old-secret-0123456789abcdef", new = "new-secret-0123456789abcdef"}
max_ttl_s = 600
"""


def accepted(check: SignatureCheck, signed: str, region: str, now: float) -> bool:
    parts = urlsplit(signed)
    query = MultiDict(parse_qsl(parts.query, keep_blank_values=True))
    return check.problem(parts.path, query, region, now) is None


def test_urls_are_signed_with_the_newest_key_and_pass_the_edges_check(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG)
    access = edge_access(str(path), region="NO")
    assert access.region_header == "X-Viewer-Country"
    assert access.signer is not None
    clock = ManualClock(1_800_000_000.0)
    signer = UrlSigner(load_settings(path), region="NO", clock=clock)
    signed = signer("/v1/tracks/demo-001/160")
    assert "kid=new" in signed
    check = SignatureCheck(load_settings(path).auth)
    assert accepted(check, signed, "NO", clock())
    assert signer("/v1/tracks/demo-001/160") == signed  # remembered, not signed again
    clock.advance(400)  # past half of the 600 s lifetime the config allows
    renewed = signer("/v1/tracks/demo-001/160")
    assert renewed != signed
    assert accepted(check, renewed, "NO", clock())


def test_with_bind_region_the_signature_covers_the_listeners_region(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG + "bind_region = true\n")
    settings = load_settings(path)
    check = SignatureCheck(settings.auth)
    now = 1_800_000_000.0
    for region, expected in (("NO", "NO"), (None, "SE")):  # no --region: the node's own
        signed = UrlSigner(settings, region=region, clock=lambda: now)("/v1/tracks/t1")
        assert accepted(check, signed, expected, now)
        assert not accepted(check, signed, "DK", now)


def test_without_keys_or_config_urls_are_not_signed(tmp_path: Path) -> None:
    assert edge_access(None, None).signer is None
    assert edge_access(None, None).region_header == "X-Client-Region"
    path = tmp_path / "edge.toml"
    path.write_text('[edge]\nregion = "SE"\n')
    assert edge_access(str(path), None).signer is None
