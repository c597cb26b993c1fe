"""Requests that carry CMCD, on a real edge with signed URLs: the CMCD argument dash.js appends
to a signed URL changes nothing about how it is checked and served (one signed-URL memo entry,
hot memory hits), a malformed report still gets its 206 (ignored, counted, no ERROR line),
and the session id reaches the access log, of refused requests too."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import pytest

from edge.access.signing import signed_query
from edge.runtime.app import EdgeApp
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support import cmcd
from tests.support.edge_server import Counters, EdgeServer

SLICE = TEST_SLICE_BYTES
SECRET = "cmcd-secret-0123456789"


def _signed(path: str) -> str:
    return f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + 600)}"


@pytest.fixture
def signed_edge(start_edge: Callable[..., EdgeServer]) -> EdgeServer:
    return start_edge(auth={"signing_keys": {"k1": SECRET}})


def _playing(n: int) -> cmcd.Values:
    """What dash.js sends with its n-th audio range: every value changes each time."""
    return {
        "bl": 1000 * n,
        "br": 160,
        "cid": "t1",
        "d": 4000,
        "mtp": 2000 + 100 * n,
        "ot": "a",
        "sf": "d",
        "sid": "6e2fb550-c457-11e9-bb97-0800200c9a66",
        "st": "v",
        "tb": 320,
    }


def _spy_on_hot_hits(edge: EdgeServer) -> list[bool]:
    """Whether each call of the hot-hit path answered (True) or passed (False); read it after
    an ``edge.call``, which runs after what the edge's loop was doing."""
    calls: list[bool] = []

    async def spy(app: EdgeApp) -> None:
        hot = app.services.hot
        serve = hot.serve

        def counted(*args: object, **kwargs: object) -> object:
            answer = serve(*args, **kwargs)  # type: ignore[arg-type]
            calls.append(answer is not None)
            return answer

        hot.serve = counted  # type: ignore[method-assign,assignment]

    edge.call(spy)
    return calls


def test_a_signed_url_with_cmcd_appended_is_verified_once_and_served_hot(
    catalog: Catalog, signed_edge: EdgeServer
) -> None:
    data = os.urandom(3 * SLICE)
    manifest = catalog.publish({"160": data})
    url = _signed(f"/v1/tracks/{manifest.track_id}/160")
    assert signed_edge.get(url).status == 200  # every slice into memory
    hot = _spy_on_hot_hits(signed_edge)
    for n in range(6):
        reply = signed_edge.get(
            cmcd.appended(url, _playing(n)), Range=f"bytes={SLICE}-{SLICE + 99}"
        )
        assert (reply.status, reply.body) == (206, data[SLICE : SLICE + 100])
        assert (reply.header("X-Cache"), reply.header("X-Cache-Tier")) == ("HIT", "memory")
    # CMCD first, or in headers: the same URL to the memo, and hot hits all the same.
    first = url.replace("?", f"?{cmcd.argument(_playing(7))}&", 1)
    assert signed_edge.get(first, Range=f"bytes={SLICE}-{SLICE + 99}").status == 206
    in_headers = cmcd.headers(_playing(8))
    assert signed_edge.get(url, Range=f"bytes={SLICE}-{SLICE + 99}", **in_headers).status == 206

    async def remembered(app: EdgeApp) -> int:
        return app.access.signatures.remembered

    # (Read on the edge's loop: the last answer's spy call may follow its bytes.)
    assert signed_edge.call(remembered) == 1
    assert hot == [True] * 8


def test_cmcd_does_not_sign_a_url_nor_stand_in_for_a_signature(
    catalog: Catalog, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(SLICE)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    assert signed_edge.get(cmcd.appended(path, _playing(1))).status == 403
    forged = f"{path}?{cmcd.argument({'sid': 'x'})}&exp=9999999999&kid=k1&sig=AAAA"
    assert signed_edge.get(forged).status == 403
    # The signature covers the path, not the query: CMCD added after signing keeps it valid.
    assert signed_edge.get(cmcd.appended(_signed(path), "bl=1")).status == 200


def test_malformed_cmcd_is_ignored_counted_and_answered_normally(
    catalog: Catalog, signed_edge: EdgeServer, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(2 * SLICE)
    manifest = catalog.publish({"160": data})
    url = _signed(f"/v1/tracks/{manifest.track_id}/160")
    counters = Counters(signed_edge)
    malformed = {
        'bl=2000,sid="unclosed': "syntax",
        "bl=fast": "wrong_type",
        "bl=-1": "out_of_range",
        "bl=1,bl=2": "duplicate",
        "bl=1," + "x=1," * 100: "too_long",
    }
    with caplog.at_level(logging.WARNING):
        for listing in malformed:
            for asked in (cmcd.appended(url, listing), url):
                headers = {} if asked != url else {"CMCD-Request": listing}
                reply = signed_edge.get(asked, Range="bytes=0-99", **headers)
                assert (reply.status, reply.body) == (206, data[:100]), listing
        raw = url + '&CMCD=sid="no%encoding' + "%ZZ" * 3  # not even URL-encoded properly
        assert signed_edge.get(raw, Range="bytes=0-99").status == 206  # an unclosed string
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    name = "encore_player_cmcd_malformed_total"
    for reason in malformed.values():
        expected = 3 if reason == "syntax" else 2
        assert counters.delta(name, client_region="SE", reason=reason) == expected, reason
    requests = counters.delta("encore_player_cmcd_requests_total", client_region="SE")
    assert requests == 2 * len(malformed) + 1


def test_the_session_id_reaches_the_access_log_of_served_and_refused_requests(
    catalog: Catalog, signed_edge: EdgeServer
) -> None:
    manifest = catalog.publish({"160": os.urandom(SLICE)})
    path = f"/v1/tracks/{manifest.track_id}"
    mark = signed_edge.access_mark()
    signed_edge.get(cmcd.appended(_signed(f"{path}/160"), {"sid": "s-42", "bl": 100}))
    signed_edge.get(_signed(path), **cmcd.headers({"sid": "s-43", "su": True}))  # the manifest
    signed_edge.get(cmcd.appended(f"{path}/160", {"sid": 'a "b"'}))  # unsigned: a 403
    signed_edge.get(_signed(f"{path}/160"), Range="bytes=0-99")  # no CMCD at all
    served, manifest_line, refused, plain = signed_edge.access_lines(4, since=mark)
    assert " 200 " in served
    assert " s-42 bytes 0-" not in served  # a 200 has no Content-Range: "-" comes last
    assert served.endswith(" s-42 -")
    assert manifest_line.endswith(" s-43 -")
    assert " 403 " in refused
    assert refused.endswith(" a%20%22b%22 -")
    assert plain.split(" ")[-3:-1] == ["-", "bytes"]  # sid "-", then the Content-Range
