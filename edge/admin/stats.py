"""``GET /admin/stats``: what each worker holds and how its origin is doing, as JSON, and
the node's totals. State, not rates: rates and ratios are for Prometheus."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from edge.runtime.context import WorkerContext

SUMMED = ("memory", "disk")


def worker_stats(worker: WorkerContext) -> dict[str, Any]:
    store = worker.slices
    disk = store.disk
    breaker = store.guard.breaker
    return {
        "worker": worker.index,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - worker.started_at, 1),
        "memory": {
            "bytes": store.memory.bytes_held,
            "slices": len(store.memory),
            "max_bytes": store.memory.max_bytes,
        },
        "disk": None
        if disk is None
        else {
            "bytes": disk.bytes_held,
            "slices": len(disk),
            "max_bytes": disk.max_bytes,
            "index_rebuilt": disk.rebuilt.is_set(),
        },
        "manifests_cached": worker.manifests.held,
        "origin": {
            "breaker": breaker.state.label,
            "slices_in_flight": len(store.fills),
        },
        "prefetch_queued": worker.prefetcher.queued,
    }


def node_stats(worker: WorkerContext, workers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The node's view: its settings that matter when reading the rest, totals, and each
    worker's stats (``workers``; those not running are missing)."""
    totals: dict[str, Any] = {
        tier: {
            key: sum(w[tier][key] for w in workers if w[tier] is not None)
            for key in ("bytes", "slices", "max_bytes")
        }
        for tier in SUMMED
    }
    totals["manifests_cached"] = sum(w["manifests_cached"] for w in workers)
    totals["slices_in_flight"] = sum(w["origin"]["slices_in_flight"] for w in workers)
    settings = worker.settings
    return {
        "region": settings.edge.region,
        "workers_configured": worker.count,
        "workers_answering": len(workers),
        "slice_bytes": settings.cache.slice_bytes,
        "signed_urls_required": worker.access.signatures.required,  # as reloaded since
        "totals": totals,
        "workers": sorted(workers, key=lambda w: int(w["worker"])),
    }
