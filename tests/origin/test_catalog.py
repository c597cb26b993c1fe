"""Catalogue commands against the real S3 server: license, ls, show and rm."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from origin import layout
from tests.conftest import Catalog
from tests.origin.conftest import OriginCli, one_error_line
from tests.support.audio import make_source
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture(scope="module")
def short_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(tmp_path_factory.mktemp("catalog") / "short.wav", 3)


def _ingested(cli: OriginCli, source: Path, *args: str) -> str:
    track_id = f"cat-{uuid.uuid4().hex[:10]}"
    result = cli("ingest", str(source), "--track-id", track_id, "--ladder", "vorbis:96", *args)
    assert result.returncode == 0, result.stderr
    return track_id


def test_license_rewrites_only_the_manifest(origin_cli: OriginCli, short_source: Path) -> None:
    track_id = _ingested(origin_cli, short_source, "--allow", "SE")
    before = origin_cli.objects()
    result = origin_cli(
        "license", track_id, "--allow", "se,no", "--deny", "US", "--not-before", "2026-01-01"
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"{track_id}: licence allow SE,NO deny US from 2026-01-01 until -"
    )
    after = origin_cli.objects()
    manifest_key = layout.manifest_key(track_id)
    assert after[manifest_key] != before[manifest_key]
    assert {k: v for k, v in after.items() if k != manifest_key} == {
        k: v for k, v in before.items() if k != manifest_key
    }
    license = origin_cli.manifest(track_id).license
    assert license is not None
    assert (license.allow, license.deny) == (("SE", "NO"), ("US",))
    cleared = origin_cli("license", track_id, "--not-before", "none")
    assert cleared.returncode == 0, cleared.stderr
    assert origin_cli.manifest(track_id).license.not_before is None  # type: ignore[union-attr]


def test_license_refuses_nonsense(origin_cli: OriginCli, short_source: Path) -> None:
    track_id = _ingested(origin_cli, short_source, "--allow", "*")
    unchanged = origin_cli.manifest_bytes(track_id)
    assert "nothing to change" in one_error_line(origin_cli("license", track_id))
    assert "'ZZ' is not an ISO 3166-1" in one_error_line(
        origin_cli("license", track_id, "--allow", "ZZ")
    )
    assert "must be earlier than not_after" in one_error_line(
        origin_cli("license", track_id, "--not-before", "2030-01-01", "--not-after", "2029-01-01")
    )
    assert origin_cli.manifest_bytes(track_id) == unchanged
    assert one_error_line(origin_cli("license", "never-ingested", "--allow", "SE")) == (
        "encore-origin: track 'never-ingested' is not published"
    )


def test_ls_shows_id_title_renditions_size_and_licence(
    origin_cli: OriginCli, short_source: Path
) -> None:
    track_id = _ingested(origin_cli, short_source, "--allow", "DK", "--title", "Listed")
    listed = origin_cli("ls")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(track_id))
    assert "Listed" in row
    assert " 96 " in row
    assert "KiB" in row
    assert row.endswith("allow DK deny -")
    as_json = json.loads(origin_cli("ls", "--json").stdout)
    entry = next(t for t in as_json["tracks"] if t["track_id"] == track_id)
    assert entry["license"] == {"allow": ["DK"], "deny": [], "not_before": None, "not_after": None}
    assert entry["renditions"]["96"]["codec"] == "vorbis"
    assert entry["size"] == entry["renditions"]["96"]["size"]


def test_ls_flags_an_invalid_manifest_and_goes_on(origin_cli: OriginCli, catalog: Catalog) -> None:
    catalog.put_raw("tracks/ls-broken/manifest.json", b'{"schema": 1}')
    listed = origin_cli("ls")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("ls-broken"))
    assert "INVALID MANIFEST" in row


def test_show_prints_the_manifest(origin_cli: OriginCli, short_source: Path) -> None:
    track_id = _ingested(origin_cli, short_source)
    shown = origin_cli("show", track_id)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["track_id"] == track_id
    assert "license" not in doc  # ingested without one
    assert one_error_line(origin_cli("show", "missing-track")) == (
        "encore-origin: track 'missing-track' is not published"
    )


def test_rm_unpublishes_then_deletes_everything(
    origin_cli: OriginCli, proxy: TcpProxy, short_source: Path
) -> None:
    track_id = _ingested(origin_cli, short_source, "--allow", "*")
    result = OriginCli(proxy.url, origin_cli.bucket)("rm", track_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"removed {track_id}: 2 objects"
    deletes = [r.path for r in proxy.requests if r.method == "DELETE"]
    assert len(deletes) == 2
    assert deletes[0].endswith(f"/tracks/{track_id}/manifest.json")  # unpublished first
    assert not [k for k in origin_cli.objects() if k.startswith(layout.track_prefix(track_id))]
    assert one_error_line(origin_cli("rm", track_id)) == (
        f"encore-origin: track {track_id!r} has no objects in the bucket"
    )


def test_rm_cleans_up_what_a_failed_ingest_left(origin_cli: OriginCli, catalog: Catalog) -> None:
    leftover = layout.audio_key("half-done", "96", "ab" * 32, "ogg")
    catalog.put_raw(leftover, b"orphaned audio")
    result = origin_cli("rm", "half-done")
    assert result.returncode == 0, result.stderr
    assert leftover not in origin_cli.objects()
