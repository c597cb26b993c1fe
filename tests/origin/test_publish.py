"""Publishing against the real S3 server: content-addressed objects, manifest last, idempotent."""

from __future__ import annotations

import os

from tests.conftest import Catalog
from tests.support.tcp_proxy import TcpProxy


def test_republishing_the_same_audio_uploads_no_audio_again(
    catalog: Catalog, proxy: TcpProxy
) -> None:
    audio = {"96": os.urandom(5000), "160": os.urandom(7000)}
    first = catalog.publish(audio, track_id="idempotent-track", via=proxy.url)
    puts = [r.path for r in proxy.requests if r.method == "PUT"]
    # Audio first, the manifest last: its appearance publishes the track.
    assert len(puts) == 3
    assert puts[-1].endswith("/tracks/idempotent-track/manifest.json")
    proxy.requests.clear()
    second = catalog.publish(audio, track_id="idempotent-track", via=proxy.url)
    assert second.renditions == first.renditions
    puts = [r.path for r in proxy.requests if r.method == "PUT"]
    assert puts == [puts[-1]]
    assert puts[0].endswith("/manifest.json")
