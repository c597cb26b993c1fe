"""The edge's Prometheus metrics, and the ``/metrics`` endpoint.

Labels stay low-cardinality: never a track id. With ``PROMETHEUS_MULTIPROC_DIR`` set, the
endpoint aggregates every worker process (prometheus-client multiprocess mode).
"""

from __future__ import annotations

import bisect
import functools
import importlib.metadata
import os
import platform
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)


class CountedSeries:
    """One labelled series of a counter that the hot path counts in a plain number, added
    to prometheus-client's value by :func:`fold` (in multiprocess mode each increment of
    the real value is a locked write to a shared file: a couple of µs, every request)."""

    __slots__ = ("_child", "pending")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.pending = 0.0

    def inc(self, amount: float = 1) -> None:
        self.pending += amount

    def fold(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0.0
            self._child.inc(amount)


class ObservedSeries:
    """As :class:`CountedSeries`, for a histogram: bucket counts and the sum, folded into
    the histogram's own values (its ``_buckets`` and ``_sum``: prometheus-client has no
    public call that adds many observations at once; tests/edge/telemetry pin the result)."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: tuple[float, ...] = tuple(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._sum += value
        self._counts[bisect.bisect_left(self._bounds, value)] += 1

    def fold(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        total, self._sum = self._sum, 0.0
        self._counts = [0] * len(counts)
        child = self._child
        child._sum.inc(total)
        for bucket, count in zip(child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


_FOLDED: list[CountedSeries | ObservedSeries] = []
# Other plain counts to fold (edge.telemetry.answers registers its own).
FOLDS: list[Callable[[], None]] = []


def _labelled[S: CountedSeries | ObservedSeries](
    metric: Counter | Histogram, make: Callable[[Any], S]
) -> Callable[..., S]:
    """``metric.labels(...)`` for the hot path: one series per combination of label values,
    made on first use and folded from then on (labels are low-cardinality by design, so the
    memo stays small; a series appears in /metrics once first folded)."""

    @functools.cache
    def labelled(*values: str) -> S:
        one = make(metric.labels(*values))
        _FOLDED.append(one)
        return one

    return labelled


def counted(metric: Counter) -> Callable[..., CountedSeries]:
    return _labelled(metric, CountedSeries)


def observed(metric: Histogram) -> Callable[..., ObservedSeries]:
    return _labelled(metric, ObservedSeries)


REQUESTS = Counter(
    "encore_requests",
    "HTTP requests answered, by route, method and status code.",
    ["route", "method", "status"],
)
RESPONSE_BYTES = Counter(
    "encore_response_bytes",
    "Audio body bytes sent to clients, by the cache tier they came from.",
    ["tier"],
)
ORIGIN_REQUESTS = Counter(
    "encore_origin_requests",
    "Requests sent to the origin bucket, by operation and outcome.",
    ["operation", "outcome"],
)
ORIGIN_BYTES = Counter("encore_origin_bytes", "Body bytes received from the origin.")
TTFB = Histogram(
    "encore_ttfb_seconds",
    "Time from request start to the first body byte written, by X-Cache result.",
    ["cache"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

CACHE_LOOKUPS = Counter(
    "encore_cache_lookups",
    "Slice lookups in a cache tier, by tier and result (hit or miss).",
    ["tier", "result"],
)
CACHE_EVICTIONS = Counter(
    "encore_cache_evictions", "Slices evicted from a cache tier to make room.", ["tier"]
)
CACHE_REFUSED = Counter(
    "encore_cache_admissions_refused",
    "Slices a tier did not store (larger than the tier, or the disk refused the write).",
    ["tier"],
)
# Summed over worker processes in multiprocess mode: each worker holds its own share.
CACHE_BYTES = Gauge(
    "encore_cache_bytes", "Bytes held in a cache tier.", ["tier"], multiprocess_mode="livesum"
)
CACHE_OBJECTS = Gauge(
    "encore_cache_objects", "Slices held in a cache tier.", ["tier"], multiprocess_mode="livesum"
)
DISK_DAMAGED = Counter(
    "encore_disk_damaged_slices",
    "Slice files that failed verification (truncated, corrupt, misplaced) and were dropped.",
)
DISK_REBUILD_SECONDS = Gauge(
    "encore_disk_index_rebuild_seconds",
    "How long the last disk index rebuild at startup took.",
    multiprocess_mode="max",
)

# --- origin protection --------------------------------------------------------------------------
ORIGIN_FILLS = Counter(
    "encore_origin_fills",
    "Slices fetched from the origin (each once per worker, however many wait), by kind: "
    "demand or prefetch.",
    ["kind"],
)
FILL_WAITS = Counter(
    "encore_fill_waits",
    "Requests that waited on a slice another request or a prefetch was fetching, by outcome: "
    "done, error, timeout, full (too many waiters), gone (client left).",
    ["outcome"],
)
ORIGIN_DUPLICATE_FETCHES = Counter(
    "encore_origin_duplicate_fetches",
    "Slices this worker fetched that another worker had stored meanwhile (counted through the "
    "disk tier, so only when it is on).",
)
ORIGIN_RETRIES = Counter(
    "encore_origin_retries",
    "Origin GETs tried again after a transient failure, by the failure's error code.",
    ["reason"],
)
BREAKER_STATE = Gauge(
    "encore_origin_breaker_state",
    "The origin circuit breaker: 0 closed, 1 half-open, 2 open (the worst worker's).",
    multiprocess_mode="max",
)
BREAKER_TRANSITIONS = Counter(
    "encore_origin_breaker_transitions",
    "Circuit breaker state changes, by the state entered.",
    ["state"],
)
PREFETCH_ISSUED = Counter(
    "encore_prefetch_issued",
    "Slices fetched ahead of demand, by reason: sequential, next_track or warm.",
    ["reason"],
)
PREFETCH_USED = Counter(
    "encore_prefetch_used", "Prefetched slices that a request read before they left memory."
)
PREFETCH_WASTED = Counter(
    "encore_prefetch_wasted", "Prefetched slices evicted from memory before any request read them."
)
PREFETCH_SKIPPED = Counter(
    "encore_prefetch_skipped",
    "Prefetch jobs dropped, by reason: queue_full or origin_trouble.",
    ["reason"],
)
MANIFEST_LOOKUPS = Counter(
    "encore_manifest_lookups",
    "Manifest lookups, by result: fresh, stale (served while revalidating), stale_if_error, "
    "loaded (fetched from the origin), negative (a cached not-found).",
    ["result"],
)
LICENSE_DENIALS = Counter(
    "encore_license_denials",
    "Requests refused with 451, by reason (region, window, no_licence) and client region "
    "(regions the config names; any other is 'other').",
    ["reason", "region"],
)
SIGNATURE_REJECTIONS = Counter(
    "encore_signature_rejections",
    "Requests refused with 403 for their signed URL, by error code.",
    ["reason"],
)
PURGES = Counter("encore_purges", "Tracks purged through the admin API, on this worker.")
ADMIN_AUTH_FAILURES = Counter(
    "encore_admin_auth_failures",
    "Admin API requests refused for their token, by outcome: refused (a wrong or missing "
    "token) or backoff (refused unread while the peer waits out its failures).",
    ["outcome"],
)

# --- clients --------------------------------------------------------------------------------
SEND_TIMEOUTS = Counter(
    "encore_send_timeouts",
    "Connections cut because the client took none of the queued response bytes for "
    "server.send_timeout_s.",
)
NEXT_TRACK_HINTS = Counter(
    "encore_next_track_hints",
    "Next-track hints (X-Encore-Next), by outcome: accepted, dropped, repeat, rate_limited, "
    "unsigned, bad_signature, malformed, off.",
    ["outcome"],
)

# --- what players report (CMCD, edge.telemetry.cmcd) -------------------------------------------
# Counted for requests that passed the signature and licence checks, by the client's region
# as encore_license_denials_total names it (a region the config names, else "other").
_REGION = ["client_region"]
PLAYER_CMCD_REQUESTS = Counter(
    "encore_player_cmcd_requests", "Requests that carried CMCD (query or headers).", _REGION
)
PLAYER_CMCD_MALFORMED = Counter(
    "encore_player_cmcd_malformed",
    "Requests whose CMCD had parts ignored, by reason: too_long, syntax, wrong_type, "
    "out_of_range, duplicate (each reason once per request).",
    [*_REGION, "reason"],
)
PLAYER_STALLS = Counter(
    "encore_player_stall_requests",
    "Requests whose player said its buffer ran dry since its last request (CMCD bs).",
    _REGION,
)
PLAYER_STARTUPS = Counter(
    "encore_player_startup_requests",
    "Requests a player needs urgently: startup, seek or recovery from a stall (CMCD su).",
    _REGION,
)
PLAYER_BUFFER = Histogram(
    "encore_player_buffer_length_seconds",
    "The player's buffer when it sent the request (CMCD bl).",
    _REGION,
    buckets=(0.5, 1, 2, 4, 6, 8, 10, 15, 20, 30, 45, 60, 120),
)
PLAYER_THROUGHPUT = Histogram(
    "encore_player_measured_throughput_kbps",
    "The throughput the player measured, kbit/s (CMCD mtp).",
    _REGION,
    buckets=(64, 128, 256, 512, 1000, 2000, 5000, 10_000, 25_000, 50_000, 100_000),
)
PLAYER_BITRATE = Histogram(
    "encore_player_requested_bitrate_kbps",
    "The encoded bitrate of what the player asked for, kbit/s (CMCD br); buckets at rungs.",
    _REGION,
    buckets=(32, 48, 64, 96, 128, 160, 192, 256, 320, 510),
)
PLAYER_HINTS = Counter(
    "encore_player_hints",
    "CMCD prefetch hints, by hint (nrr: a range of the rendition being read; nor: another "
    "rendition, taken as a next-track hint) and outcome.",
    ["hint", "outcome"],
)

# --- the node itself -------------------------------------------------------------------------
BUILD_INFO = Gauge(
    "encore_build_info",
    "Always 1; its labels say which Encore and Python versions the node runs.",
    ["version", "python"],
    multiprocess_mode="max",
)
WORKER_STARTS = Counter(
    "encore_worker_starts",
    "Edge worker processes started: a rise without a node restart is a worker that died and "
    "was replaced.",
)

ACCESS_LOG_DROPPED = Counter(
    "encore_access_log_dropped_lines",
    "Access log lines not written: the buffer was full or the write failed.",
)

# The series of the metrics recorded on every request (or every chunk of a body).
requests = counted(REQUESTS)
response_bytes = counted(RESPONSE_BYTES)
ttfb = observed(TTFB)
cache_lookups = counted(CACHE_LOOKUPS)
fill_waits = counted(FILL_WAITS)
manifest_lookups = counted(MANIFEST_LOOKUPS)
next_track_hints = counted(NEXT_TRACK_HINTS)
player_cmcd_requests = counted(PLAYER_CMCD_REQUESTS)
player_cmcd_malformed = counted(PLAYER_CMCD_MALFORMED)
player_stalls = counted(PLAYER_STALLS)
player_startups = counted(PLAYER_STARTUPS)
player_buffer = observed(PLAYER_BUFFER)
player_throughput = observed(PLAYER_THROUGHPUT)
player_bitrate = observed(PLAYER_BITRATE)
player_hints = counted(PLAYER_HINTS)


def _version() -> str:
    try:
        return importlib.metadata.version("encore")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def worker_started() -> None:
    """A worker process (or a one-worker node) starts: counted, and the build announced."""
    BUILD_INFO.labels(_version(), platform.python_version()).set(1)
    WORKER_STARTS.inc()


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def fold() -> None:
    """Add what the hot path counted to the metrics: once a second (edge.runtime.worker),
    and in every worker before /metrics is rendered (edge.api.probes)."""
    for one in _FOLDED:
        one.fold()
    for fold_one in FOLDS:
        fold_one()


def render() -> bytes:
    """The exposition text: this process's metrics, or every worker's in multiprocess mode.
    (Call :func:`fold` on the event loop first.)"""
    return generate_latest(_registry())
