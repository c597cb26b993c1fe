"""``GET|HEAD /v1/tracks/{track_id}/{rendition}``: the audio bytes, with RFC 9110 ranges and
conditionals.

A hit is answered without a task or a coroutine: the manifest is fresh in memory, the
licence decision remembered, the head's static part rendered when the manifest loaded, the
slices pinned from memory, and the response written in one vectored write; an unconditional
GET of one range whose answer is known goes through ``edge.api.hot_hits``. Anything that
must wait (a manifest load, a disk read, an origin fetch) continues as a coroutine. A player's
CMCD report (``edge.telemetry.cmcd``) is counted once the checks have passed, whichever way
the request is answered, and its prefetch hints act after the look-ahead
(``edge.cache.player_hints``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from edge.api.services import Services
from edge.cache import fills
from edge.cache.next_track import HEADER as NEXT_TRACK_HEADER
from edge.cache.store import ReadPlan, SliceStore, StoredObject
from edge.http import preconditions
from edge.http.errors import EncoreError, NotFound
from edge.http.multipart import ByteRangesBody
from edge.http.preconditions import CONDITIONALS, Outcome
from edge.http.protocol import HttpConnection
from edge.http.ranges import ByteRange, parse_range
from edge.http.request import Request
from edge.http.writer import ClientGone
from edge.telemetry import metrics
from edge.telemetry.cmcd import HEADER_SET as CMCD_HEADERS
from edge.telemetry.cmcd import CmcdReport
from edge.upstream.client_view import LoadedManifest, RenditionHead

log = logging.getLogger(__name__)

_NEXT_TRACK = NEXT_TRACK_HEADER.lower()
# Headers a hot hit (edge.api.hot_hits) leaves to the general path.
_GENERAL_ONLY = CONDITIONALS | {"if-range", _NEXT_TRACK}
# Headers that ask for more than a plain hit: those, and CMCD's.
_NOT_PLAIN = _GENERAL_ONLY | CMCD_HEADERS
Pending = Coroutine[Any, Any, None] | None


def get_rendition(
    services: Services, request: Request, conn: HttpConnection, track_id: str, name: str
) -> Pending:
    region = services.access.admit(request)
    loaded = services.manifests.fresh(track_id)
    if loaded is None:
        return _load_then_serve(services, request, conn, (track_id, name, region))
    return _serve(services, request, conn, (track_id, name, region), loaded)


async def _load_then_serve(
    services: Services, request: Request, conn: HttpConnection, asked: tuple[str, str, str]
) -> None:
    loaded = await services.manifests.get(asked[0])
    pending = _serve(services, request, conn, asked, loaded)
    if pending is not None:
        await pending


def _serve(
    services: Services,
    request: Request,
    conn: HttpConnection,
    asked: tuple[str, str, str],
    loaded: LoadedManifest,
) -> Pending:
    """``asked``: (track id, rendition name, the client's region)."""
    track_id, name, region = asked
    access = services.access
    manifest = loaded.manifest
    access.licences.enforce_remembered(track_id, manifest.license, region, loaded.decisions)
    head = loaded.heads.get(name)
    if head is None:
        raise NotFound(
            f"track {track_id!r} has no rendition {name!r}; see its manifest",
            code="rendition_not_found",
        )
    signed = access.signatures.required
    block = head.signed_block if signed else head.unsigned_block
    headers = request.headers
    published = manifest.published_at
    # Most requests send no conditional, no hint and no CMCD: one check says so.
    plain = _NOT_PLAIN.isdisjoint(headers)
    report = None
    if not plain or request.cmcd is not None:
        report = services.players.read(request, region)
        plain = _GENERAL_ONLY.isdisjoint(headers)
    if plain:
        if request.method == "GET":
            answer = services.hot.serve(request, conn, head, headers.get("range"), signed)
            if answer is not None:
                if report is not None:
                    services.player_hints.consider(
                        report,
                        request.raw_path,
                        conn.state,
                        region=region,
                        playing=head.rendition,
                        last_read=answer.last_index,
                    )
                return None
    elif not CONDITIONALS.isdisjoint(headers) and (
        preconditions.evaluate(headers, head.etag, published) is Outcome.NOT_MODIFIED
    ):
        conn.respond(request, 304, block, length=0)
        return None
    size = head.rendition.size
    ranges: list[ByteRange] | None = None
    header = headers.get("range")
    if header is not None and preconditions.range_applies(headers, head.etag, published):
        ranges = parse_range(header, size)
    reply = _Reply(services, request, conn, head, block=block, region=region, ranges=ranges)
    reply.report = report
    store, reading = services.slices, request.method != "HEAD"
    plan = store.plan_held(reply.obj, reply.parts, reading=reading)
    if plan is None and reading:
        plan = store.plan_read_now(reply.obj, reply.parts)
    if plan is None:
        return reply.plan_then_send()
    return reply.send(plan)


class _Reply:
    """One answer with a rendition's bytes, once its checks have passed."""

    __slots__ = (
        "block",
        "conn",
        "head",
        "obj",
        "parts",
        "ranges",
        "region",
        "report",
        "request",
        "services",
    )

    def __init__(
        self,
        services: Services,
        request: Request,
        conn: HttpConnection,
        head: RenditionHead,
        *,
        block: bytes,
        region: str,
        ranges: list[ByteRange] | None,
    ) -> None:
        self.services, self.request, self.conn = services, request, conn
        self.head, self.block, self.region = head, block, region
        size = head.rendition.size
        self.obj = StoredObject(head.rendition.key, size)
        self.ranges = ranges
        self.parts = ([ByteRange(0, size - 1)] if size else []) if ranges is None else ranges
        self.report: CmcdReport | None = None  # the player's CMCD, if it sent any

    async def plan_then_send(self) -> None:
        reading = self.request.method != "HEAD"
        plan = await self.services.slices.plan(self.obj, self.parts, reading=reading)
        pending = self.send(plan)
        if pending is not None:
            await pending

    def send(self, plan: ReadPlan) -> Pending:
        request, conn, parts, size = self.request, self.conn, self.parts, self.obj.size
        # What the cache held when the response started: the plan changes as the body is read
        # (disk slices read are noted as held), and the TTFB label must say the same as X-Cache.
        cache_status = request.cache_status = plan.cache_status
        status = 200 if self.ranges is None else 206
        multipart = None
        if len(parts) > 1:
            multipart = ByteRangesBody(parts, size, self.head.rendition.content_type)
            described = f"Content-Type: {multipart.content_type}\r\n".encode()
            length = multipart.content_length
        else:
            described = self.head.content_type_line
            length = sum(part.length for part in parts)
            if self.ranges is not None:
                request.content_range = self.ranges[0].content_range(size)
                described += f"Content-Range: {request.content_range}\r\n".encode()
        block = b"%s%sX-Cache: %s\r\nX-Cache-Tier: %s\r\n" % (
            self.block,
            described,
            cache_status.encode(),
            plan.slowest_tier.label.encode(),
        )
        if request.method == "HEAD" or not parts:
            conn.respond(request, status, block, length=length)  # no body: no first byte to time
            return None
        store = self.services.slices
        if plan.needs_origin:
            store.guard.breaker.check()  # fail fast (503) while the origin is known to be down
        self._schedule_prefetch()
        if plan.needs_origin or plan.on_disk:
            return self._stream(status, block, length, plan, multipart)
        # All in memory: one vectored write, now.
        views: list[bytes | memoryview] = []
        if multipart is None:
            views.extend(store.held_views(plan, parts[0]))
        else:
            for part, part_head in zip(parts, multipart.part_heads, strict=True):
                views.append(part_head)
                views.extend(store.held_views(plan, part))
            views.append(multipart.tail)
        conn.respond_views(request, status, block, views, length)
        if conn.first_byte_at is not None:
            metrics.ttfb(cache_status).observe(conn.first_byte_at - request.started)
        return None

    def _schedule_prefetch(self) -> None:
        services = self.services
        last_index = max(part.end for part in self.parts) // services.slices.slice_bytes
        services.prefetcher.after_read(
            self.obj, last_index, services.settings.cache.prefetch_slices
        )
        playing = self.head.rendition
        hint = self.request.headers.get(_NEXT_TRACK)
        if hint is not None:
            services.hints.consider(hint, self.conn.state, region=self.region, playing=playing)
        if self.report is not None:
            services.player_hints.consider(
                self.report,
                self.request.raw_path,
                self.conn.state,
                region=self.region,
                playing=playing,
                last_read=last_index,
            )

    async def _stream(
        self,
        status: int,
        block: bytes,
        length: int,
        plan: ReadPlan,
        multipart: ByteRangesBody | None,
    ) -> None:
        """The body from the tiers and the fills. The head leaves with the first bytes: an
        origin that fails before any byte gives the client a clean JSON error. After it, the
        connection is cut: the client must see a failed transfer, never a short body passed
        off as complete (nor a second response inside the first)."""
        request, conn, store = self.request, self.conn, self.services.slices
        conn.begin(request, status, block, length)
        body: AsyncGenerator[bytes | memoryview, None]
        if multipart is None:
            # Slices being fetched are written to the client by their fill, as the bytes land.
            body = store.read(plan, self.parts[0], client=conn)
        else:
            body = _multipart_body(store, plan, self.parts, multipart)
        try:
            async for chunk in body:
                await conn.write(chunk)
        except (ClientGone, fills.ClientGone, ConnectionError) as exc:
            # The client left (or stopped reading, past server.send_timeout_s): normal, and
            # nobody to tell. Counted as client_closed; a line at DEBUG only.
            log.debug("client left during %s: %s", request.path, exc)
            conn.abort(request, client_left=True)
            return
        except Exception as exc:
            if not conn.head_sent:
                raise
            if isinstance(exc, EncoreError):
                log.warning("aborting %s mid-body: %s (%s)", request.path, exc.message, exc.code)
            else:
                log.exception("aborting %s mid-body", request.path)
            conn.abort(request, client_left=False)
            return
        finally:
            await body.aclose()
            if conn.first_byte_at is not None:
                metrics.ttfb(request.cache_status).observe(conn.first_byte_at - request.started)
        conn.end(request)


async def _multipart_body(
    store: SliceStore, plan: ReadPlan, parts: list[ByteRange], multipart: ByteRangesBody
) -> AsyncGenerator[bytes | memoryview, None]:
    """A multipart body: each part's head and bytes, then the closing tail. The first item
    always carries audio bytes, so the head never leaves before an origin failure shows."""
    for part, head in zip(parts, multipart.part_heads, strict=True):
        chunks = store.read(plan, part)
        try:
            first = await anext(chunks)
            yield head + first if head else first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()
    if multipart.tail:
        yield multipart.tail
