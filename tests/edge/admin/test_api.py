"""The admin listener and ``POST /admin/warm``, and ``encore-edge warm --top FILE`` against it;
bodies no real request sends (nested thousands deep) are a 400 like any other bad body."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from origin.license import License
from origin.local_s3 import free_port
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.admin_client import admin_request
from tests.support.edge_server import EdgeServer
from tests.support.tcp_proxy import TcpProxy

SLICE = TEST_SLICE_BYTES
TOKEN = "s3cret-admin-token"


def _admin(
    port: int,
    body: bytes | dict[str, Any] | None,
    token: str | None = TOKEN,
    path: str = "/admin/warm",
) -> tuple[int, dict[str, Any]]:
    return admin_request(port, path, body, token)


@pytest.fixture
def admin_edge(proxy: TcpProxy, start_edge: Callable[..., EdgeServer]) -> tuple[EdgeServer, int]:
    port = free_port()
    edge = start_edge(origin_url=proxy.url, admin={"token": TOKEN, "port": port})
    return edge, port


def test_warm_fetches_the_first_slices_of_each_track_for_this_region(
    catalog: Catalog, proxy: TcpProxy, admin_edge: tuple[EdgeServer, int]
) -> None:
    edge, port = admin_edge
    data = os.urandom(5 * SLICE)
    hot = catalog.publish({"96": os.urandom(3 * SLICE), "160": data})
    blocked = catalog.publish({"160": os.urandom(SLICE)}, license=License(allow=("US",)))

    status, answer = _admin(
        port, {"tracks": [hot.track_id, blocked.track_id, "never-published"], "slices": 2}
    )

    assert status == 200
    assert answer["tracks"] == 3
    assert answer["warmed"] == 1
    assert answer["slices_fetched"] == 4  # two slices of each of two renditions
    assert {(f["track_id"], f["error"]) for f in answer["failed"]} == {
        (blocked.track_id, "not_licensed"),
        ("never-published", "track_not_found"),
    }
    assert proxy.gets(blocked.renditions["160"].key) == []  # the licence came first
    reply = edge.get(f"/v1/tracks/{hot.track_id}/160", Range=f"bytes=0-{2 * SLICE - 1}")
    assert (reply.header("X-Cache"), reply.body) == ("HIT", data[: 2 * SLICE])

    # Again: everything is cached, nothing is fetched.
    status, again = _admin(port, {"tracks": [hot.track_id], "renditions": ["160"], "slices": 2})
    assert (status, again["slices_fetched"], again["slices_cached"]) == (200, 0, 2)


def test_warm_while_the_origin_is_in_trouble_says_so(
    catalog: Catalog, proxy: TcpProxy, admin_edge: tuple[EdgeServer, int]
) -> None:
    """Prefetch pauses under origin trouble: a warm then fetched nothing, and must not report
    the slices as cached."""
    edge, port = admin_edge
    track = catalog.publish({"160": os.urandom(2 * SLICE)})
    assert edge.get(f"/v1/tracks/{track.track_id}").status == 200  # the manifest is cached
    proxy.set_down(True)
    other = catalog.publish({"160": os.urandom(SLICE)})
    assert edge.get(f"/v1/tracks/{other.track_id}").status >= 500  # a failure: trouble
    proxy.set_down(False)

    status, answer = _admin(port, {"tracks": [track.track_id], "slices": 2})
    assert (status, answer["warmed"], answer["slices_cached"]) == (200, 0, 0)
    assert [(f["track_id"], f["error"]) for f in answer["failed"]] == [
        (track.track_id, "origin_trouble")
    ]
    assert proxy.gets(track.renditions["160"].key) == []


def test_an_oversized_body_is_a_413_with_a_stable_code(admin_edge: tuple[EdgeServer, int]) -> None:
    body = b'{"tracks": ["a"], "pad": "' + b"x" * (1024 * 1024) + b'"}'
    status, answer = _admin(admin_edge[1], body)
    assert (status, answer["error"]) == (413, "body_too_large")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        ({"tracks": []}, "list of 1 to 1000"),
        ({"tracks": ["../../etc/passwd"]}, "invalid entries"),
        ({"tracks": ["a"], "slices": 0}, "'slices'"),
        ({"tracks": ["a"], "slices": True}, "'slices'"),
        ({"tracks": ["a"], "renditions": ["96/../x"]}, "invalid entries"),
        ({"tracks": ["a"], "colour": "blue"}, "unknown keys"),
        ({}, "'tracks' is required"),
    ],
)
def test_bad_warm_requests_get_a_clear_400(
    admin_edge: tuple[EdgeServer, int], body: bytes | dict[str, Any], message: str
) -> None:
    status, answer = _admin(admin_edge[1], body)
    assert status == 400
    assert answer["error"] == "bad_body"
    assert message in answer["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/warm", {"tracks": ["a"]}),
        ("/admin/purge", {"tracks": ["a"]}),
        ("/admin/stats", None),
    ],
)
def test_the_admin_api_needs_the_token_and_is_not_on_the_public_port(
    admin_edge: tuple[EdgeServer, int], path: str, body: dict[str, Any] | None
) -> None:
    edge, port = admin_edge
    for token in (None, "wrong", TOKEN + "x", "", "é"):
        status, answer = _admin(port, body, token=token, path=path)
        assert (status, answer["error"]) == (401, "unauthorized")
    status, _ = _admin(edge.port, body, path=path)
    assert status in {404, 405}
    assert _admin(port, body, path=path)[0] == 200


DEEP = 100_000


@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"tracks": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"tracks": ["a", ' + b"[" * DEEP + b"]" * DEEP + b'], "slices": 1}',
    ],
    ids=["list", "tracks", "inside_tracks"],
)
def test_a_deeply_nested_body_is_a_400_not_a_500(
    admin_edge: tuple[EdgeServer, int], body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = admin_edge
    with caplog.at_level(logging.ERROR):
        for path in ("/admin/warm", "/admin/purge"):
            status, answer = _admin(port, body, path=path)
            assert (status, answer["error"]) == (400, "bad_body"), (path, answer)
            assert "nested too deeply" in answer["message"]
        assert _admin(port, None, path="/admin/stats")[0] == 200  # the listener is fine
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_without_a_token_there_is_no_admin_listener(
    start_edge: Callable[..., EdgeServer],
) -> None:
    port = free_port()
    start_edge(admin={"port": port})
    with pytest.raises(ConnectionRefusedError):
        _admin(port, {"tracks": ["a"]})


def _warm_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", "warm", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_warm_cli_reads_a_top_list_and_reports(
    catalog: Catalog, admin_edge: tuple[EdgeServer, int], tmp_path: Path
) -> None:
    edge, port = admin_edge
    tracks = [catalog.publish({"160": os.urandom(2 * SLICE)}) for _ in range(3)]
    top = tmp_path / "top.txt"
    top.write_text(
        "# top tracks in SE this week\n"
        + "".join(f"{m.track_id}\t{1000 - i}\n" for i, m in enumerate(tracks))
        + "\nmissing-track 3\n"
    )
    config = tmp_path / "edge.toml"
    config.write_text(f'[admin]\nport = {port}\ntoken = "{TOKEN}"\n')

    result = _warm_cli(config, "--top", str(top), "--slices", "1")

    assert result.returncode == 1  # one of them failed
    assert result.stdout.strip() == (
        "warmed 3 of 4 tracks: 3 slices fetched, 0 already cached, 1 failed"
    )
    assert "missing-track: track_not_found" in result.stderr
    for manifest in tracks:
        reply = edge.get(f"/v1/tracks/{manifest.track_id}/160", Range="bytes=0-9")
        assert reply.header("X-Cache") == "HIT"

    top.write_text("".join(f"{m.track_id}\n" for m in tracks))
    result = _warm_cli(config, "--top", str(top), "--slices", "1")
    assert (result.returncode, result.stdout.strip()) == (
        0,
        "warmed 3 of 3 tracks: 0 slices fetched, 3 already cached, 0 failed",
    )


@pytest.mark.parametrize(
    ("config_text", "top_text", "error"),
    [
        ('[admin]\ntoken = ""\n', "a\n", "admin.token is not set"),
        (
            '[admin]\ntoken = "{wrong}"\n',
            "ok-id\nbad/id\n",
            "top.txt:2: 'bad/id' is not a track id",
        ),
        ('[admin]\ntoken = "{wrong}"\n', "# nothing\n\n", "lists no track ids"),
        ('[admin]\ntoken = "{wrong}"\nport = {free}\n', "a\n", "cannot reach the admin API"),
        ('[admin]\ntoken = "{wrong}"\nport = {admin}\n', "a\n", "refused the admin token"),
    ],
)
def test_warm_cli_errors_are_one_line(
    admin_edge: tuple[EdgeServer, int],
    tmp_path: Path,
    config_text: str,
    top_text: str,
    error: str,
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        config_text.format(free=free_port(), admin=admin_edge[1], wrong="not-the-admin-token")
    )
    top = tmp_path / "top.txt"
    top.write_text(top_text)
    result = _warm_cli(config, "--top", str(top))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("encore-edge warm: ")
    assert error in lines[0]
