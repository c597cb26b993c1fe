"""``/v1/tracks/{track_id}`` (the manifest, client view) and ``/v1/tracks/{track_id}/{rendition}``
(the audio bytes, with full RFC 9110 range and conditional semantics)."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from edge import metrics, preconditions
from edge.errors import BadRequest, EncoreError, NotFound, StreamAborted
from edge.manifests import ManifestStore
from edge.multipart import ByteRangesBody
from edge.preconditions import Outcome, http_date
from edge.ranges import ByteRange, parse_range
from edge.slice_store import ReadPlan, SliceStore, StoredObject
from origin import layout
from origin.manifest import Manifest, Rendition

log = logging.getLogger(__name__)

MANIFESTS = web.AppKey("manifests", ManifestStore)
SLICES = web.AppKey("slices", SliceStore)
MANIFEST_TTL = web.AppKey("manifest_ttl_s", float)

IMMUTABLE = "public, max-age=31536000, immutable"


def _ids(request: web.Request) -> tuple[str, str | None]:
    track_id = request.match_info["track_id"]
    if not layout.is_track_id(track_id):
        raise BadRequest("track ids are 1-128 of A-Z a-z 0-9 _ -", code="invalid_track_id")
    rendition = request.match_info.get("rendition")
    if rendition is not None and not layout.is_rendition_name(rendition):
        raise BadRequest("rendition names are 1-32 of A-Z a-z 0-9 _ -", code="invalid_rendition")
    return track_id, rendition


# --- manifest ---------------------------------------------------------------------------------


async def get_manifest(request: web.Request) -> web.StreamResponse:
    track_id, _ = _ids(request)
    loaded = await request.app[MANIFESTS].get(track_id)
    manifest, body, etag = loaded.manifest, loaded.view_body, loaded.view_etag
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(manifest.published_at),
        # Manifests carry licensing, which later depends on the client's region: no shared caches.
        "Cache-Control": f"private, max-age={int(request.app[MANIFEST_TTL])}",
    }
    if preconditions.evaluate(request.headers, etag, manifest.published_at) is Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


# --- rendition bytes --------------------------------------------------------------------------


async def get_rendition(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    track_id, name = _ids(request)
    assert name is not None  # the route has a {rendition} part
    manifest = (await request.app[MANIFESTS].get(track_id)).manifest
    rendition = manifest.renditions.get(name)
    if rendition is None:
        raise NotFound(
            f"track {track_id!r} has no rendition {name!r}; see its manifest",
            code="rendition_not_found",
        )
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": rendition.etag,
        "Last-Modified": http_date(manifest.published_at),
        "Cache-Control": IMMUTABLE,
    }
    outcome = preconditions.evaluate(request.headers, rendition.etag, manifest.published_at)
    if outcome is Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)

    ranges = _requested_ranges(request, rendition, manifest)
    store = request.app[SLICES]
    obj = StoredObject(rendition.key, rendition.size)
    whole = [ByteRange(0, rendition.size - 1)] if rendition.size else []
    parts = whole if ranges is None else ranges
    plan = await store.plan(obj, parts)
    headers["X-Cache"] = plan.cache_status
    headers["X-Cache-Tier"] = plan.slowest_tier.label

    response = web.StreamResponse(status=200 if ranges is None else 206, headers=headers)
    heads, tail = [b""] * len(parts), b""
    if len(parts) > 1:
        multipart = ByteRangesBody(parts, rendition.size, rendition.content_type)
        response.headers["Content-Type"] = multipart.content_type
        response.content_length = multipart.content_length
        heads, tail = multipart.part_heads, multipart.tail
    else:
        response.headers["Content-Type"] = rendition.content_type
        response.content_length = sum(part.length for part in parts)
        if ranges is not None:
            response.headers["Content-Range"] = ranges[0].content_range(rendition.size)

    await response.prepare(request)
    if request.method == "HEAD" or not parts:
        return response  # no body, so no first byte to time
    await _write_body(
        request,
        response,
        store=store,
        plan=plan,
        parts=parts,
        heads=heads,
        tail=tail,
        started=started,
    )
    return response


def _requested_ranges(
    request: web.Request, rendition: Rendition, manifest: Manifest
) -> list[ByteRange] | None:
    header = request.headers.get("Range")
    if header is None:
        return None
    if not preconditions.range_applies(request.headers, rendition.etag, manifest.published_at):
        return None
    return parse_range(header, rendition.size)


async def _write_body(
    request: web.Request,
    response: web.StreamResponse,
    *,
    store: SliceStore,
    plan: ReadPlan,
    parts: list[ByteRange],
    heads: list[bytes],
    tail: bytes,
    started: float,
) -> None:
    first = True
    try:
        for part, head in zip(parts, heads, strict=True):
            if head:
                await response.write(head)
            async for chunk in store.read(plan, part):
                await response.write(chunk)
                if first:
                    metrics.TTFB.labels(plan.cache_status).observe(time.perf_counter() - started)
                    first = False
        if tail:
            await response.write(tail)
    except EncoreError as exc:
        # Headers are gone, so no error response can follow. Break the connection: the client
        # must see a failed transfer, never a short body passed off as complete.
        log.warning("aborting %s mid-body: %s (%s)", request.path, exc.message, exc.code)
        if request.transport is not None:
            request.transport.abort()
        raise StreamAborted(response) from exc


async def options(request: web.Request) -> web.Response:
    """CORS preflight for web players."""
    _ids(request)
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Range, If-Range, If-None-Match, If-Modified-Since, "
            "If-Match, If-Unmodified-Since, X-Encore-Next",
            "Access-Control-Max-Age": "86400",
        },
    )


def add_routes(app: web.Application) -> None:
    manifest = app.router.add_resource("/v1/tracks/{track_id}", name="manifest")
    manifest.add_route("GET", get_manifest)
    manifest.add_route("HEAD", get_manifest)
    manifest.add_route("OPTIONS", options)
    rendition = app.router.add_resource("/v1/tracks/{track_id}/{rendition}", name="rendition")
    rendition.add_route("GET", get_rendition)
    rendition.add_route("HEAD", get_rendition)
    rendition.add_route("OPTIONS", options)
