"""``/v1/tracks/{track_id}`` (the manifest, client view) and ``/v1/tracks/{track_id}/{rendition}``
(the audio bytes, with full RFC 9110 range and conditional semantics)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from aiohttp import web

from edge.access.checks import Access
from edge.cache.fills import ClientGone
from edge.cache.next_track import HEADER as NEXT_TRACK_HEADER
from edge.cache.next_track import NextTrackHints
from edge.cache.prefetch import Prefetcher
from edge.cache.store import ReadPlan, SliceStore, StoredObject
from edge.http import preconditions
from edge.http.audio_response import AudioResponse
from edge.http.errors import BadRequest, EncoreError, NotFound, StreamAborted
from edge.http.multipart import ByteRangesBody
from edge.http.preconditions import Outcome, http_date
from edge.http.ranges import ByteRange, parse_range
from edge.http.server import Connection
from edge.telemetry import metrics
from edge.upstream.manifests import ManifestStore
from origin import layout
from origin.license import ANY_REGION, License
from origin.manifest import Manifest, Rendition
from origin.settings import Settings

log = logging.getLogger(__name__)

MANIFESTS = web.AppKey("manifests", ManifestStore)
SLICES = web.AppKey("slices", SliceStore)
PREFETCHER = web.AppKey("prefetcher", Prefetcher)
SETTINGS = web.AppKey("settings", Settings)
ACCESS = web.AppKey("access", Access)
HINTS = web.AppKey("next_track_hints", NextTrackHints)

# Audio never changes, but who may have it does: only bytes that anyone may fetch anywhere,
# unsigned, may sit in a shared cache (one in front of several regions would skip the licence).
PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"


def _audio_cache_control(access: Access, licence: License | None) -> str:
    open_to_all = (
        licence is not None
        and ANY_REGION in licence.allow
        and not licence.deny
        and licence.not_before is None
        and licence.not_after is None
    )
    return PUBLIC_IMMUTABLE if open_to_all and not access.signatures.required else PRIVATE_IMMUTABLE


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
    access = request.app[ACCESS]
    region = access.admit(request)
    loaded = await request.app[MANIFESTS].get(track_id)
    manifest, body, etag = loaded.manifest, loaded.view_body, loaded.view_etag
    access.licences.enforce(track_id, manifest.license, region)
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(manifest.published_at),
        # Manifests carry licensing, which later depends on the client's region: no shared caches.
        "Cache-Control": f"private, max-age={int(request.app[SETTINGS].edge.manifest_ttl_s)}",
    }
    if preconditions.evaluate(request.headers, etag, manifest.published_at) is Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


# --- rendition bytes --------------------------------------------------------------------------


async def get_rendition(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    store = request.app[SLICES]
    await store.fills.let_fetches_start()
    track_id, name = _ids(request)
    assert name is not None  # the route has a {rendition} part
    access = request.app[ACCESS]
    region = access.admit(request)
    manifest = (await request.app[MANIFESTS].get(track_id)).manifest
    access.licences.enforce(track_id, manifest.license, region)
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
        "Cache-Control": _audio_cache_control(access, manifest.license),
    }
    outcome = preconditions.evaluate(request.headers, rendition.etag, manifest.published_at)
    if outcome is Outcome.NOT_MODIFIED:
        return web.Response(status=304, headers=headers)

    ranges = _requested_ranges(request, rendition, manifest)
    obj = StoredObject(rendition.key, rendition.size)
    whole = [ByteRange(0, rendition.size - 1)] if rendition.size else []
    parts = whole if ranges is None else ranges
    plan = await store.plan(obj, parts, reading=request.method != "HEAD")
    # What the cache held when the response started: the plan changes as the body is read
    # (disk slices read are noted as held), and the TTFB label must say the same as X-Cache.
    cache_status = plan.cache_status
    headers["X-Cache"] = cache_status
    headers["X-Cache-Tier"] = plan.slowest_tier.label

    status = 200 if ranges is None else 206
    multipart = _describe_body(headers, parts, ranges, rendition)
    length = multipart.content_length if multipart else sum(part.length for part in parts)
    if request.method == "HEAD" or not parts:
        head_only = web.StreamResponse(status=status, headers=headers)
        head_only.content_length = length
        await head_only.prepare(request)
        return head_only  # no body, so no first byte to time
    if plan.needs_origin:
        store.guard.breaker.check()  # fail fast (503) while the origin is known to be down
    _schedule_prefetch(request, store, obj, parts, rendition, region=region)
    # The head is ready now but leaves with the first bytes: an origin that fails before
    # any byte gives the client a clean JSON error rather than a cut connection.
    response = AudioResponse(status=status, headers=headers)
    response.content_length = length
    await response.prepare(request)
    body: AsyncGenerator[bytes | memoryview, None]
    if multipart is None:
        # Slices being fetched are written to the client by their fill, as the bytes land.
        body = store.read(plan, parts[0], client=response)
    else:
        body = _multipart_body(store, plan, parts, multipart.part_heads, multipart.tail)
    try:
        await _send_body(request, response, body)
    finally:
        if response.first_byte_at is not None:
            metrics.ttfb(cache_status).observe(response.first_byte_at - started)
    return response


def _describe_body(
    headers: dict[str, str],
    parts: list[ByteRange],
    ranges: list[ByteRange] | None,
    rendition: Rendition,
) -> ByteRangesBody | None:
    """Set the body's Content-Type (and Content-Range); the layout of a multipart body."""
    if len(parts) > 1:
        multipart = ByteRangesBody(parts, rendition.size, rendition.content_type)
        headers["Content-Type"] = multipart.content_type
        return multipart
    headers["Content-Type"] = rendition.content_type
    if ranges is not None:
        headers["Content-Range"] = ranges[0].content_range(rendition.size)
    return None


def _schedule_prefetch(
    request: web.Request,
    store: SliceStore,
    obj: StoredObject,
    parts: list[ByteRange],
    rendition: Rendition,
    *,
    region: str,
) -> None:
    prefetcher = request.app[PREFETCHER]
    last_index = max(part.end for part in parts) // store.slice_bytes
    prefetcher.after_read(obj, last_index, request.app[SETTINGS].cache.prefetch_slices)
    hint = request.headers.get(NEXT_TRACK_HEADER)
    if hint is not None:
        protocol = request.protocol
        state = protocol.state if isinstance(protocol, Connection) else None
        request.app[HINTS].consider(hint, state, region=region, playing=rendition)


def _requested_ranges(
    request: web.Request, rendition: Rendition, manifest: Manifest
) -> list[ByteRange] | None:
    header = request.headers.get("Range")
    if header is None:
        return None
    if not preconditions.range_applies(request.headers, rendition.etag, manifest.published_at):
        return None
    return parse_range(header, rendition.size)


async def _multipart_body(
    store: SliceStore,
    plan: ReadPlan,
    parts: list[ByteRange],
    heads: list[bytes],
    tail: bytes,
) -> AsyncGenerator[bytes | memoryview, None]:
    """A multipart body: each part's head and bytes, then the closing tail. The first item
    always carries audio bytes, so the head never leaves before an origin failure shows."""
    for part, head in zip(parts, heads, strict=True):
        chunks = store.read(plan, part)
        try:
            first = await anext(chunks)
            yield head + first if head else first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
    if tail:
        yield tail


async def _send_body(
    request: web.Request,
    response: AudioResponse,
    body: AsyncGenerator[bytes | memoryview, None],
) -> None:
    """Write ``body``. A failure before the first byte is raised, for a JSON error response;
    after it, the connection is cut: the client must see a failed transfer, never a short
    body passed off as complete (nor a second response inside the first)."""
    try:
        async for chunk in body:
            await response.write(chunk)
    except (ClientGone, ConnectionError) as exc:
        # The client left (or stopped reading, past server.send_timeout_s): normal, and
        # nobody to tell. Counted as client_closed; a line at DEBUG only.
        log.debug("client left during %s: %s", request.path, exc)
        _cut(request)
        raise StreamAborted(response, client_left=True) from exc
    except Exception as exc:
        if not response.head_sent:
            raise
        if isinstance(exc, EncoreError):
            log.warning("aborting %s mid-body: %s (%s)", request.path, exc.message, exc.code)
        else:
            log.exception("aborting %s mid-body", request.path)
        _cut(request)
        raise StreamAborted(response, client_left=False) from exc
    finally:
        await body.aclose()


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


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
