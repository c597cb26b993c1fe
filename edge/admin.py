"""The admin listener: ``admin.host:admin.port`` (loopback by default), never the public port.

Off unless ``admin.token`` is set; every request needs ``Authorization: Bearer <token>``,
compared in constant time. With several workers each binds the port (SO_REUSEPORT) and one
of them takes each request: warming fills that worker's memory and the shared disk tier.

``POST /admin/warm`` with ``{"tracks": [ids], "renditions": [names]?, "slices": n?}`` fetches
the first ``n`` slices (default 4) of each track's renditions (all, or those named) through the
prefetch budget, after the licence check for this node's region, and answers when done with
what it fetched and what failed.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from edge.errors import BadRequest, EncoreError, json_error
from edge.manifests import ManifestStore
from edge.middleware import MIDDLEWARES
from edge.prefetch import Prefetcher, PrefetchReason
from edge.settings import Settings
from edge.warming import PickRenditions, warm_track
from origin import layout
from origin.manifest import Manifest, Rendition

MAX_BODY_BYTES = 1024 * 1024
MAX_WARM_TRACKS = 1000
MAX_WARM_SLICES = 100_000
DEFAULT_WARM_SLICES = 4

_WARM_KEYS = {"tracks", "renditions", "slices"}

ADMIN_MANIFESTS = web.AppKey("admin_manifests", ManifestStore)
ADMIN_PREFETCHER = web.AppKey("admin_prefetcher", Prefetcher)
ADMIN_SETTINGS = web.AppKey("admin_settings", Settings)


def _bearer(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return json_error(
                401,
                "unauthorized",
                "this needs the admin token: Authorization: Bearer <admin.token>",
                {"WWW-Authenticate": 'Bearer realm="encore-admin"'},
            )
        return await handler(request)

    return require_token


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json", code="bad_body")
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="bad_body") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="bad_body")
    return body


def _string_list(
    body: dict[str, Any], key: str, check: Callable[[str], bool], most: int
) -> list[str]:
    value = body[key]
    if not isinstance(value, list) or not value or len(value) > most:
        raise BadRequest(f"{key!r} must be a list of 1 to {most} names", code="bad_body")
    bad = [v for v in value if not isinstance(v, str) or not check(v)]
    if bad:
        raise BadRequest(f"{key!r} has invalid entries: {json.dumps(bad[:5])}", code="bad_body")
    return list(dict.fromkeys(value))  # in order, without repeats


def _pick(names: list[str] | None) -> PickRenditions:
    def pick(manifest: Manifest) -> list[Rendition]:
        renditions = manifest.renditions
        if names is None:
            return list(renditions.values())
        return [renditions[name] for name in names if name in renditions]

    return pick


async def warm(request: web.Request) -> web.Response:
    body = await _json_object(request)
    unknown = sorted(set(body) - _WARM_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown keys {unknown} (known: tracks, renditions, slices)", code="bad_body"
        )
    if "tracks" not in body:
        raise BadRequest("'tracks' is required: a list of track ids", code="bad_body")
    track_ids = _string_list(body, "tracks", layout.is_track_id, MAX_WARM_TRACKS)
    names = (
        _string_list(body, "renditions", layout.is_rendition_name, 64)
        if body.get("renditions") is not None
        else None
    )
    slices = body.get("slices", DEFAULT_WARM_SLICES)
    if (
        isinstance(slices, bool)
        or not isinstance(slices, int)
        or not 1 <= slices <= MAX_WARM_SLICES
    ):
        raise BadRequest(
            f"'slices' must be an integer from 1 to {MAX_WARM_SLICES}", code="bad_body"
        )

    app = request.app
    manifests, prefetcher = app[ADMIN_MANIFESTS], app[ADMIN_PREFETCHER]
    region = app[ADMIN_SETTINGS].edge.region
    fetched = wanted = 0
    failed: list[dict[str, str]] = []

    async def one(track_id: str) -> None:
        nonlocal fetched, wanted
        try:
            warmed = await warm_track(
                manifests,
                prefetcher,
                track_id,
                region=region,
                pick=_pick(names),
                slices=slices,
                reason=PrefetchReason.WARM,
            )
        except EncoreError as exc:
            failed.append({"track_id": track_id, "error": exc.code, "message": exc.message})
            return
        fetched += warmed.fetched
        wanted += warmed.wanted

    await asyncio.gather(
        *(prefetcher.submit_and_wait(functools.partial(one, t)) for t in track_ids)
    )
    return web.json_response(
        {
            "tracks": len(track_ids),
            "warmed": len(track_ids) - len(failed),
            "slices_fetched": fetched,
            "slices_cached": wanted - fetched,
            "failed": failed,
        }
    )


def create_admin_app(
    settings: Settings, manifests: ManifestStore, prefetcher: Prefetcher
) -> web.Application:
    admin = web.Application(
        middlewares=[*MIDDLEWARES, _bearer(settings.admin.token)], client_max_size=MAX_BODY_BYTES
    )
    admin[ADMIN_SETTINGS] = settings
    admin[ADMIN_MANIFESTS] = manifests
    admin[ADMIN_PREFETCHER] = prefetcher
    admin.router.add_post("/admin/warm", warm, name="admin_warm")
    return admin


async def serve_admin(
    settings: Settings, manifests: ManifestStore, prefetcher: Prefetcher, *, shared_port: bool
) -> AsyncGenerator[None, None]:
    """Run the admin listener for as long as the caller's context (a ``cleanup_ctx``)."""
    if not settings.admin.token:
        yield
        return
    runner = web.AppRunner(create_admin_app(settings, manifests, prefetcher))
    await runner.setup()
    site = web.TCPSite(
        runner, settings.admin.host, settings.admin.port, reuse_port=shared_port or None
    )
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
