"""How the workers of one node reach each other: each serves a small control API on a Unix
socket in a folder only the edge's user can enter (``mkdtemp``, mode 0700), made by the
supervisor. The worker that takes an admin request (purge, stats) asks the others through
it. A worker that is not running (being replaced) has no socket: it starts empty, so there
is nothing to purge there and nothing to report.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from edge.runtime.context import WorkerContext

CONTROL_TIMEOUT_S = 30.0  # a purge of many tracks deletes many files
MAX_CONTROL_BODY_BYTES = 64 * 1024**2

ControlHandler = Callable[[WorkerContext, Any], Awaitable[Any]]
_CONTEXT = web.AppKey("control_context", WorkerContext)
_HANDLERS = web.AppKey("control_handlers", dict[str, ControlHandler])


def socket_path(control_dir: Path, index: int) -> Path:
    return control_dir / f"worker-{index}.sock"


@dataclass(frozen=True, slots=True)
class PeerReply:
    worker: int
    answer: Any = None  # the peer's JSON answer, when it gave one
    error: str = ""  # "not_running", "timeout", or what went wrong

    @property
    def not_running(self) -> bool:
        return self.error == "not_running"


async def _dispatch(request: web.Request) -> web.Response:
    handler = request.app[_HANDLERS].get(request.match_info["command"])
    if handler is None:
        return web.json_response({"error": "unknown_command"}, status=404)
    argument = await request.json() if request.can_read_body else None
    return web.json_response(await handler(request.app[_CONTEXT], argument))


async def serve_control(
    worker: WorkerContext, handlers: dict[str, ControlHandler]
) -> AsyncGenerator[None, None]:
    """Serve ``handlers`` (command name -> handler) on this worker's control socket for as long
    as the caller's context. Nothing to serve for a lone worker."""
    if worker.control_dir is None or worker.count < 2:
        yield
        return
    app = web.Application(client_max_size=MAX_CONTROL_BODY_BYTES)
    app[_CONTEXT], app[_HANDLERS] = worker, handlers
    app.router.add_post("/{command}", _dispatch)
    path = socket_path(worker.control_dir, worker.index)
    path.unlink(missing_ok=True)  # left by the worker this one replaces
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    try:
        yield
    finally:
        await runner.cleanup()
        path.unlink(missing_ok=True)


async def ask_peers(worker: WorkerContext, command: str, argument: Any = None) -> list[PeerReply]:
    """Run ``command`` on every other worker of this node, at once; one reply each."""
    if worker.control_dir is None:
        return []
    control_dir = worker.control_dir
    others = [i for i in range(worker.count) if i != worker.index]
    return list(await asyncio.gather(*(_ask(control_dir, i, command, argument) for i in others)))


async def _ask(control_dir: Path, index: int, command: str, argument: Any) -> PeerReply:
    path = socket_path(control_dir, index)
    if not path.exists():
        return PeerReply(index, error="not_running")
    timeout = aiohttp.ClientTimeout(total=CONTROL_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
            session.post(f"http://worker/{command}", json=argument, timeout=timeout) as reply,
        ):
            if reply.status != 200:
                return PeerReply(index, error=f"status {reply.status}")
            return PeerReply(index, answer=await reply.json())
    except aiohttp.ClientConnectorError:
        return PeerReply(index, error="not_running")  # the socket outlived its worker
    except TimeoutError:
        return PeerReply(index, error="timeout")
    except (aiohttp.ClientError, json.JSONDecodeError) as exc:
        return PeerReply(index, error=f"{type(exc).__name__}: {exc}")
