"""``encore-origin ingest`` end to end: real ffmpeg, the real S3 server, the manifest it leaves.

Bad input must fail with one clear line and a non-zero exit, and must never publish a manifest.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest

from origin import layout
from origin.local_s3 import LocalS3
from origin.manifest_schema import check
from tests.conftest import S3Target
from tests.origin.conftest import OriginCli, one_error_line
from tests.support.audio import make_source
from tests.support.tcp_proxy import SeenRequest, TcpProxy


def _track_id() -> str:
    return f"ing-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_source(
        tmp_path_factory.mktemp("ingest") / "song.flac",
        12,
        tags={"title": "Tagged title", "artist": "Tagged artist"},
    )


def _audio_keys(cli: OriginCli, track_id: str) -> set[str]:
    prefix = layout.track_prefix(track_id)
    return {k for k in cli.objects() if k.startswith(prefix) and not k.endswith("manifest.json")}


def test_ingest_publishes_the_ladder_with_licence_and_seek_tables(
    origin_cli: OriginCli, source: Path
) -> None:
    track_id = _track_id()
    result = origin_cli("ingest", str(source), "--track-id", track_id, "--allow", "SE,NO,DK")
    assert result.returncode == 0, result.stderr
    assert f"published {track_id}" in result.stdout
    raw = origin_cli.manifest_bytes(track_id)
    assert raw is not None
    check(json.loads(raw))  # the schema file, as a third party would use it
    manifest = origin_cli.manifest(track_id)
    assert (manifest.title, manifest.artist) == ("Tagged title", "Tagged artist")
    assert manifest.duration_s == pytest.approx(12, abs=0.05)
    assert manifest.license is not None
    assert manifest.license.allow == ("SE", "NO", "DK")
    assert sorted(manifest.renditions) == ["160", "320", "96"]
    for rendition in manifest.renditions.values():
        assert rendition.codec == "vorbis"
        assert rendition.measured_kbps == pytest.approx(rendition.bitrate_kbps, rel=0.15)
        assert len(rendition.seek_table) >= manifest.duration_s
    assert _audio_keys(origin_cli, track_id) == {r.key for r in manifest.renditions.values()}


def test_reingesting_the_same_audio_changes_nothing(origin_cli: OriginCli, source: Path) -> None:
    track_id = _track_id()
    first = origin_cli("ingest", str(source), "--track-id", track_id, "--allow", "*")
    assert first.returncode == 0, first.stderr
    before = origin_cli.objects()
    again = origin_cli("ingest", str(source), "--track-id", track_id)
    assert again.returncode == 0, again.stderr
    assert f"unchanged {track_id}" in again.stdout
    assert "already there" in again.stdout
    assert "uploaded" not in again.stdout
    assert origin_cli.objects() == before  # same keys, same ETags, same modification times


def test_new_audio_publishes_new_objects_and_prunes_old_only_when_asked(
    origin_cli: OriginCli, source: Path, tmp_path: Path
) -> None:
    track_id = _track_id()
    assert (
        origin_cli("ingest", str(source), "--track-id", track_id, "--allow", "FI").returncode == 0
    )
    old = origin_cli.manifest(track_id)
    remix = make_source(tmp_path / "remix.wav", 8, frequency=880)
    result = origin_cli("ingest", str(remix), "--track-id", track_id, "--title", "Remix")
    assert result.returncode == 0, result.stderr
    new = origin_cli.manifest(track_id)
    assert new.title == "Remix"
    assert new.license == old.license  # not given again, so kept
    old_keys = {r.key for r in old.renditions.values()}
    new_keys = {r.key for r in new.renditions.values()}
    assert not old_keys & new_keys
    assert _audio_keys(origin_cli, track_id) == old_keys | new_keys  # old objects stay
    pruned = origin_cli("ingest", str(remix), "--track-id", track_id, "--title", "Remix", "--prune")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.count("pruned ") == 3
    assert _audio_keys(origin_cli, track_id) == new_keys


def test_opus_rungs_join_the_ladder(origin_cli: OriginCli, source: Path) -> None:
    track_id = _track_id()
    result = origin_cli(
        "ingest", str(source), "--track-id", track_id, "--ladder", "vorbis:96,opus:64,hq=opus:128"
    )
    assert result.returncode == 0, result.stderr
    assert "no licence" in result.stdout
    manifest = origin_cli.manifest(track_id)
    assert manifest.license is None
    codecs = {
        name: (r.codec, r.content_type, r.key.rpartition(".")[2])
        for name, r in manifest.renditions.items()
    }
    assert codecs == {
        "96": ("vorbis", "audio/ogg; codecs=vorbis", "ogg"),
        "64": ("opus", "audio/ogg; codecs=opus", "opus"),
        "hq": ("opus", "audio/ogg; codecs=opus", "opus"),
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allow", "SE,XX"], "argument --allow: 'XX' is not an ISO 3166-1 alpha-2 region code"),
        (["--deny", "uk"], "'uk' is not an ISO 3166-1 alpha-2 region code (use GB)"),
        (["--not-after", "tomorrow"], "argument --not-after: 'tomorrow' is not an ISO 8601 date"),
        (
            ["--allow", "*", "--not-before", "2027-01-01", "--not-after", "2026-01-01"],
            "not_before (2027-01-01T00:00:00Z) must be earlier than not_after",
        ),
        (["--ladder", "mp3:128"], "unknown codec"),
    ],
)
def test_bad_options_fail_before_any_work(
    origin_cli: OriginCli, source: Path, args: list[str], message: str
) -> None:
    track_id = _track_id()
    result = origin_cli("ingest", str(source), "--track-id", track_id, *args)
    assert message in one_error_line(result)
    assert origin_cli.manifest_bytes(track_id) is None
    assert not _audio_keys(origin_cli, track_id)


def test_bad_track_id(origin_cli: OriginCli, source: Path) -> None:
    result = origin_cli("ingest", str(source), "--track-id", "../escape")
    assert "invalid track id '../escape'" in one_error_line(result)


def test_missing_file(origin_cli: OriginCli, tmp_path: Path) -> None:
    track_id = _track_id()
    result = origin_cli("ingest", str(tmp_path / "nope.flac"), "--track-id", track_id)
    assert one_error_line(result) == f"encore-origin: {tmp_path / 'nope.flac'}: no such file"
    assert origin_cli.manifest_bytes(track_id) is None


def test_non_audio_file(origin_cli: OriginCli, tmp_path: Path) -> None:
    track_id = _track_id()
    junk = tmp_path / "cover.flac"
    junk.write_bytes(bytes(range(256)) * 400)
    result = origin_cli("ingest", str(junk), "--track-id", track_id, "--allow", "*")
    assert one_error_line(result).endswith("cover.flac: not an audio file ffmpeg can read")
    assert origin_cli.manifest_bytes(track_id) is None
    assert not _audio_keys(origin_cli, track_id)


def test_unknown_bucket(origin_cli: OriginCli, source: Path) -> None:
    result = origin_cli(
        "ingest", str(source), "--track-id", _track_id(), ENCORE_ORIGIN__BUCKET="no-such-bucket"
    )
    assert one_error_line(result) == "encore-origin: bucket 'no-such-bucket' does not exist"


@pytest.mark.parametrize("published_before", [False, True], ids=["new-track", "re-ingest"])
def test_s3_server_killed_mid_upload_publishes_nothing(
    tmp_path: Path, source: Path, published_before: bool
) -> None:
    """Kill the S3 server the moment the first new audio upload starts, then restart it on the
    same data and look: the ingest failed in one line, and no manifest was published (or the
    one published before is byte for byte what it was).

    This test's server is its own rclone whatever ENCORE_TEST_S3_ENDPOINT says, so everything
    here talks to it with its credentials, never the ambient ones of the session's server. Its
    keys differ from every other server's, so the default run catches a client that forgets."""
    data = tmp_path / "s3"
    access_key, secret_key = f"crash-access-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex

    def own_server() -> LocalS3:
        log = tmp_path / "rclone.log"
        return LocalS3(data, log_path=log, access_key=access_key, secret_key=secret_key)

    server = own_server()
    server.start()
    server.create_bucket("crash")
    proxy = TcpProxy(server.host, server.port).start()
    cli = OriginCli(proxy.url, "crash", server.credentials_env())
    before: bytes | None = None
    if published_before:
        assert cli("ingest", str(source), "--track-id", "crashed", "--allow", "*").returncode == 0
        before = cli.manifest_bytes("crashed")
        source = make_source(tmp_path / "new-mix.flac", 6, frequency=660)
    killed = threading.Event()

    def kill_on_first_audio_put(request: SeenRequest) -> bool:
        if request.method == "PUT" and ".ogg" in request.path and not killed.is_set():
            server.kill()
            killed.set()
        return True

    proxy.faults.on_request = kill_on_first_audio_put
    try:
        result = cli("ingest", str(source), "--track-id", "crashed", "--allow", "*")
        assert killed.is_set()
        assert one_error_line(result).startswith("encore-origin: origin unreachable: ")
    finally:
        proxy.stop()
        server.kill()
    restarted = own_server()
    restarted.start()
    try:
        after = OriginCli(restarted.endpoint_url, "crash", restarted.credentials_env())
        manifests = [key for key in after.objects() if key.endswith("manifest.json")]
        if published_before:
            assert manifests == ["tracks/crashed/manifest.json"]
            assert after.manifest_bytes("crashed") == before
        else:
            assert manifests == []
            listed = after("ls", "--json")
            assert json.loads(listed.stdout) == {"tracks": []}
    finally:
        restarted.stop()


def test_metadata_only_change_keeps_the_publication_time(
    origin_cli: OriginCli, source: Path
) -> None:
    track_id = _track_id()
    assert origin_cli("ingest", str(source), "--track-id", track_id).returncode == 0
    first = origin_cli.manifest(track_id)
    retitled = origin_cli("ingest", str(source), "--track-id", track_id, "--title", "New title")
    assert retitled.returncode == 0, retitled.stderr
    second = origin_cli.manifest(track_id)
    assert second.title == "New title"
    # published_at is the audio's Last-Modified; the audio did not change, so neither does it.
    assert second.published_at == first.published_at


def test_a_failed_prune_says_the_track_is_published(
    s3: S3Target, origin_cli: OriginCli, proxy: TcpProxy, source: Path, tmp_path: Path
) -> None:
    track_id = _track_id()
    assert origin_cli("ingest", str(source), "--track-id", track_id).returncode == 0
    remix = make_source(tmp_path / "remix.wav", 5, frequency=550)
    proxy.faults.on_request = lambda request: request.method != "DELETE"
    via_proxy = OriginCli(proxy.url, s3.bucket)
    result = via_proxy("ingest", str(remix), "--track-id", track_id, "--prune")
    line = one_error_line(result)
    assert line.startswith(f"encore-origin: {track_id} is published, but pruning failed: ")
    assert f"published {track_id}" in result.stdout
    assert origin_cli.manifest(track_id).duration_s == pytest.approx(5, abs=0.05)
