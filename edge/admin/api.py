"""The admin listener: ``admin.host:admin.port`` (loopback by default), never the public port.

Off unless ``admin.token`` is set; every request needs ``Authorization: Bearer <token>``,
compared in constant time, and a peer that keeps sending wrong ones is made to wait
(``edge.admin.auth``). With several workers each binds the port (SO_REUSEPORT) and one
of them takes each request.

``POST /admin/purge`` with ``{"tracks": [ids]}`` drops the tracks' manifests and slices from
every worker's memory and from the disk tier (see ``edge.admin.purge``); ``GET /admin/stats``
reports what each worker holds. Both reach the other workers through their control sockets
(``edge.admin.control``).

``POST /admin/warm`` with ``{"tracks": [ids], "renditions": [names]?, "slices": n?}`` fetches
the first ``n`` slices (default 4) of each track's renditions (all, or those named) through the
prefetch budget, after the licence check for this node's region, and answers when done with
what it fetched and what failed; it fills that worker's memory and the shared disk tier.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from aiohttp import web

from edge.admin.auth import FailureBackoff, require_token
from edge.admin.control import ControlHandler, ask_peers
from edge.admin.listener import EdgeRunner
from edge.admin.middleware import MIDDLEWARES
from edge.admin.purge import Purged, objects_at_origin, purge_here
from edge.admin.stats import node_stats, worker_stats
from edge.cache.prefetch import PrefetchReason
from edge.cache.warming import PickRenditions, warm_track
from edge.http.errors import BadRequest, EncoreError
from edge.runtime.context import WorkerContext
from edge.telemetry import metrics
from origin import layout
from origin.manifest import Manifest, Rendition

MAX_BODY_BYTES = 1024 * 1024
BODY_TIMEOUT_S = 10.0
MAX_PURGE_TRACKS = 1000
MAX_WARM_TRACKS = 1000
MAX_WARM_SLICES = 100_000
DEFAULT_WARM_SLICES = 4

ADMIN_WORKER = web.AppKey("admin_worker", WorkerContext)


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body with Content-Type: application/json", code="bad_body")
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):  # a body trickled in slowly is refused
            raw = await request.read()
    except TimeoutError:
        raise BadRequest(
            f"the body took over {BODY_TIMEOUT_S:g} s to arrive", code="bad_body"
        ) from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="bad_body") from None
    except RecursionError:  # a body nested thousands deep: no real request looks like that
        raise BadRequest("the body is nested too deeply", code="bad_body") from None
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


def _only_keys(body: dict[str, Any], known: list[str], required: str) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise BadRequest(f"unknown keys {unknown} (known: {', '.join(known)})", code="bad_body")
    if required not in body:
        raise BadRequest(f"{required!r} is required: a list of track ids", code="bad_body")


async def warm(request: web.Request) -> web.Response:
    body = await _json_object(request)
    _only_keys(body, ["tracks", "renditions", "slices"], "tracks")
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

    worker = request.app[ADMIN_WORKER]
    prefetcher = worker.prefetcher
    region = worker.settings.edge.region  # warming fills this node's cache: its home region
    fetched = wanted = 0
    failed: list[dict[str, str]] = []

    async def one(track_id: str) -> None:
        nonlocal fetched, wanted
        try:
            warmed = await warm_track(
                worker.manifests,
                worker.access.licences,
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


async def purge(request: web.Request) -> web.Response:
    body = await _json_object(request)
    _only_keys(body, ["tracks"], "tracks")
    track_ids = _string_list(body, "tracks", layout.is_track_id, MAX_PURGE_TRACKS)
    worker = request.app[ADMIN_WORKER]
    objects = await objects_at_origin(worker.slices.guard, track_ids)
    here, replies = await asyncio.gather(
        purge_here(worker, track_ids, objects),
        ask_peers(worker, "purge", {"tracks": track_ids, "objects": objects}),
    )
    total, failed = here, []
    for reply in replies:
        if reply.not_running:
            continue  # it starts empty
        problem = reply.error
        if not problem:
            try:
                total += Purged.from_doc(reply.answer)
                continue
            except ValueError:
                problem = "a malformed answer"
        failed.append({"worker": reply.worker, "error": problem})
    not_running = sorted(r.worker for r in replies if r.not_running)
    metrics.PURGES.inc(len(track_ids))
    result = {
        "tracks": len(track_ids),
        "purged": total.to_doc(),
        "workers_purged": 1 + len(replies) - len(failed) - len(not_running),
        "workers_not_running": not_running,
        "workers_failed": failed,
    }
    if failed:
        # The manifest may still be served by the workers listed: the caller must retry.
        return web.json_response(
            {"error": "purge_incomplete", "message": "some workers did not confirm", **result},
            status=503,
        )
    return web.json_response(result)


async def stats(request: web.Request) -> web.Response:
    worker = request.app[ADMIN_WORKER]
    replies = await ask_peers(worker, "stats")
    answers = [r.answer for r in replies if not r.error and isinstance(r.answer, dict)]
    return web.json_response(node_stats(worker, [worker_stats(worker), *answers]))


# --- what the other workers run when asked (through edge.admin.control) -------------------


async def _purge_command(worker: WorkerContext, argument: Any) -> dict[str, int]:
    track_ids = [t for t in argument["tracks"] if layout.is_track_id(t)]
    objects = {str(k): int(v) for k, v in argument["objects"].items()}
    return (await purge_here(worker, track_ids, objects)).to_doc()


async def _stats_command(worker: WorkerContext, argument: Any) -> dict[str, Any]:
    return worker_stats(worker)


async def _fold_command(worker: WorkerContext, argument: object) -> dict[str, str]:
    metrics.fold()
    return {}


CONTROL_COMMANDS: dict[str, ControlHandler] = {
    "purge": _purge_command,
    "stats": _stats_command,
    "fold": _fold_command,
}


def create_admin_app(worker: WorkerContext) -> web.Application:
    admin = web.Application(
        middlewares=[*MIDDLEWARES, require_token(worker.settings.admin.token, FailureBackoff())],
        client_max_size=MAX_BODY_BYTES,
    )
    admin[ADMIN_WORKER] = worker
    admin.router.add_post("/admin/warm", warm, name="admin_warm")
    admin.router.add_post("/admin/purge", purge, name="admin_purge")
    admin.router.add_get("/admin/stats", stats, name="admin_stats")
    return admin


async def serve_admin(worker: WorkerContext) -> AsyncGenerator[None, None]:
    """Run the admin listener for as long as the caller's context (a ``cleanup_ctx``)."""
    settings = worker.settings
    if not settings.admin.token:
        yield
        return
    runner = EdgeRunner(create_admin_app(worker), settings)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.admin.host, settings.admin.port, reuse_port=worker.count > 1 or None
    )
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
