"""``GET|HEAD /v1/tracks/{track_id}``: the manifest as a player sees it (``client_view``)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from edge.api.services import Services
from edge.http import preconditions
from edge.http.preconditions import Outcome, http_date
from edge.http.protocol import HttpConnection
from edge.http.request import Request
from edge.http.response import header_block
from edge.upstream.client_view import LoadedManifest


def get_manifest(
    services: Services, request: Request, conn: HttpConnection, track_id: str
) -> Coroutine[Any, Any, None] | None:
    region = services.access.admit(request)
    loaded = services.manifests.fresh(track_id)
    if loaded is None:
        return _after_load(services, request, conn, (track_id, region))
    _answer(services, request, conn, (track_id, region), loaded)
    return None


async def _after_load(
    services: Services, request: Request, conn: HttpConnection, asked: tuple[str, str]
) -> None:
    loaded = await services.manifests.get(asked[0])
    _answer(services, request, conn, asked, loaded)


def _answer(
    services: Services,
    request: Request,
    conn: HttpConnection,
    asked: tuple[str, str],
    loaded: LoadedManifest,
) -> None:
    """``asked``: (track id, the client's region)."""
    track_id, region = asked
    manifest = loaded.manifest
    services.access.licences.enforce_remembered(
        track_id, manifest.license, region, loaded.decisions
    )
    services.players.read(request, region)  # players send CMCD with manifests too
    etag = loaded.view_etag
    block = header_block(
        {
            "ETag": etag,
            "Last-Modified": http_date(manifest.published_at),
            # Manifests carry licensing, which depends on the client's region: no shared caches.
            "Cache-Control": f"private, max-age={int(services.settings.edge.manifest_ttl_s)}",
        }
    )
    outcome = preconditions.evaluate(request.headers, etag, manifest.published_at)
    if outcome is Outcome.NOT_MODIFIED:
        conn.respond(request, 304, block, length=0)
        return
    body = loaded.view_body
    conn.respond(request, 200, block + b"Content-Type: application/json\r\n", body)
