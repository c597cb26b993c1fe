"""The region overview dashboard (encore-region-overview.json): every region at a glance."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Panel
from panels import (
    AVAILABILITY_BUDGET,
    HIT_LATENCY_BUDGET,
    RATE,
    REGION,
    TRACKS,
    base,
    burn,
    graph,
    single,
    summed,
    ttfb,
    with_rows,
)


def region_overview() -> dashboard.Dashboard:
    r = REGION
    sel = 'region=~"$region"'
    board = base(
        "encore-region-overview",
        "Encore / Region overview",
        "Every region at a glance: traffic, cache, origin, disk, refusals and the SLOs' budgets.",
    )
    rows: list[tuple[str, list[Builder[Panel]]]] = [
        (
            "Service level",
            [
                single(
                    "Availability (30m)",
                    "percentunit",
                    f"1 - region:encore_slo_availability_errors:ratio_rate30m{{{sel}}}",
                    "{{region}}",
                    description="Share of track answers not failed by the edge (SLO 99.9%).",
                ),
                single(
                    "Hits under 25 ms (30m)",
                    "percentunit",
                    f"1 - region:encore_slo_hit_latency_errors:ratio_rate30m{{{sel}}}",
                    "{{region}}",
                    description="Share of cache hits whose first byte left within 25 ms (SLO 99%).",
                ),
                single(
                    "Byte hit ratio (30m)",
                    "percentunit",
                    f"region:encore_byte_hit_ratio:rate30m{{{sel}}}",
                    "{{region}}",
                    description="Share of body bytes served from memory or disk.",
                ),
                graph(
                    "Availability error budget burn",
                    "suffix:x",
                    burn("region", "availability", AVAILABILITY_BUDGET, sel, "region"),
                    description="Error ratio / budget: 1x spends the 30-day budget in 30 days; "
                    "the page fires at 14.4x (1h and 5m) or 6x (6h and 30m).",
                    width=12,
                ),
                graph(
                    "Hit latency error budget burn",
                    "suffix:x",
                    burn("region", "hit_latency", HIT_LATENCY_BUDGET, sel, "region"),
                    description="Slow-hit ratio / budget (hits over 25 ms, SLO 99%).",
                    width=12,
                ),
            ],
        ),
        (
            "Traffic",
            [
                graph(
                    "Requests per region",
                    "reqps",
                    [
                        (
                            summed("region", "encore_requests_total", f"{r},{TRACKS}"),
                            "{{region}}",
                        )
                    ],
                ),
                graph(
                    "Requests per node",
                    "reqps",
                    [
                        (
                            summed("instance", "encore_requests_total", f"{r},{TRACKS}"),
                            "{{instance}}",
                        )
                    ],
                ),
                graph(
                    "Answers by status",
                    "reqps",
                    [
                        (
                            summed("status", "encore_requests_total", f"{r},{TRACKS}"),
                            "{{status}}",
                        )
                    ],
                    description="aborted: a body the edge cut; client_closed: the client left.",
                ),
                graph(
                    "Egress per region",
                    "Bps",
                    [
                        (
                            summed("region", "encore_response_bytes_total", r),
                            "{{region}}",
                        )
                    ],
                ),
                graph(
                    "Egress per node",
                    "Bps",
                    [
                        (
                            summed("instance", "encore_response_bytes_total", r),
                            "{{instance}}",
                        )
                    ],
                ),
                graph(
                    "Egress by tier",
                    "Bps",
                    [
                        (
                            summed("tier", "encore_response_bytes_total", r),
                            "{{tier}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Cache",
            [
                graph(
                    "Byte hit ratio",
                    "percentunit",
                    [
                        (f"region:encore_byte_hit_ratio:rate5m{{{sel}}}", "{{region}} 5m"),
                        (f"region:encore_byte_hit_ratio:rate1d{{{sel}}}", "{{region}} 1d"),
                    ],
                ),
                graph(
                    "Slice hit ratio by tier",
                    "percentunit",
                    [(f"region:encore_cache_hit_ratio:rate5m{{{sel}}}", "{{region}} {{tier}}")],
                    description="Of the slice lookups in a tier, the share it answered.",
                ),
                graph("Time to first byte, hits and misses", "s", ttfb(r, "region"), width=8),
            ],
        ),
        (
            "Origin",
            [
                graph(
                    "Origin requests by outcome",
                    "reqps",
                    [
                        (
                            summed("outcome", "encore_origin_requests_total", r),
                            "{{outcome}}",
                        )
                    ],
                ),
                graph(
                    "Origin error ratio per node",
                    "percentunit",
                    [(f"instance:encore_origin_errors:ratio_rate5m{{{sel}}}", "{{instance}}")],
                    description="Errors and timeouts over origin answers (404 included).",
                ),
                graph(
                    "Circuit breaker (0 closed, 1 half-open, 2 open)",
                    "none",
                    [
                        (
                            f"max by (instance) (encore_origin_breaker_state{{{r}}})",
                            "{{instance}}",
                        )
                    ],
                ),
                graph(
                    "Coalescing",
                    "percentunit",
                    [(f"instance:encore_fill_coalesced:ratio_rate5m{{{sel}}}", "{{instance}}")],
                    description="Of the slice reads that needed the origin, the share that "
                    "waited on a fetch already in flight instead of starting one.",
                ),
                graph(
                    "Prefetch usefulness",
                    "percentunit",
                    [(f"instance:encore_prefetch_useful:ratio_rate5m{{{sel}}}", "{{instance}}")],
                    description="Prefetched slices read before they left memory, of those read "
                    "or evicted.",
                ),
                graph(
                    "Origin egress to the edge",
                    "Bps",
                    [
                        (
                            summed("region", "encore_origin_bytes_total", r),
                            "{{region}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Disk and refusals",
            [
                graph(
                    "Damaged disk slices",
                    "ops",
                    [
                        (
                            summed("instance", "encore_disk_damaged_slices_total", r),
                            "{{instance}}",
                        )
                    ],
                ),
                graph(
                    "Disk writes refused",
                    "percentunit",
                    [(f"instance:encore_disk_refused:ratio_rate10m{{{sel}}}", "{{instance}}")],
                    description="Slices the disk tier refused, of the slices fetched from origin.",
                ),
                graph(
                    "Manifests served stale-if-error",
                    "percentunit",
                    [
                        (
                            f"region:encore_manifest_stale_if_error:ratio_rate5m{{{sel}}}",
                            "{{region}}",
                        )
                    ],
                ),
                graph(
                    "Licence denials (451) by client region",
                    "reqps",
                    [
                        (
                            "sum by (client_region, reason) "
                            f"(rate(encore_license_denials_total{{{r}}}{RATE}))",
                            "{{client_region}} {{reason}}",
                        )
                    ],
                ),
                graph(
                    "Signature rejections (403) by reason",
                    "reqps",
                    [
                        (
                            summed("reason", "encore_signature_rejections_total", r),
                            "{{reason}}",
                        )
                    ],
                ),
                graph(
                    "Refused share of track requests",
                    "percentunit",
                    [
                        (f"region:encore_license_denials:ratio_rate10m{{{sel}}}", "{{region}} 451"),
                        (
                            f"region:encore_signature_rejections:ratio_rate10m{{{sel}}}",
                            "{{region}} 403",
                        ),
                    ],
                    description="A jump against the day's level is a config mistake's shape.",
                ),
            ],
        ),
    ]
    return with_rows(board, rows)
