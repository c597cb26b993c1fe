"""The node drill-down dashboard (encore-node.json): one node, or a few, in detail."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import Panel
from panels import (
    AVAILABILITY_BUDGET,
    HIT_LATENCY_BUDGET,
    NODE,
    RATE,
    base,
    burn,
    graph,
    single,
    summed,
    ttfb,
    with_rows,
)


def node_drilldown() -> dashboard.Dashboard:
    n = NODE
    sel = 'region=~"$region",instance=~"$instance"'
    board = base(
        "encore-node",
        "Encore / Node",
        "One node (or a few) in detail: its workers, tiers, origin protection and clients.",
    )
    per = "instance"
    rows: list[tuple[str, list[Builder[Panel]]]] = [
        (
            "Node",
            [
                single(
                    "Encore version",
                    "none",
                    f"count by (version, python) (encore_build_info{{{n}}})",
                    "{{version}} (Python {{python}})",
                    description="Nodes per build (encore_build_info).",
                ),
                single(
                    "Worker starts",
                    "short",
                    f"sum(increase(encore_worker_starts_total{{{n}}}[$__range]))",
                    "starts",
                    description="Worker processes started in the dashboard's time range; a rise "
                    "without a node restart is a worker that died (EncoreWorkersRestarting).",
                ),
                single(
                    "Disk index rebuild",
                    "s",
                    f"max(encore_disk_index_rebuild_seconds{{{n}}})",
                    "rebuild",
                    description="How long the last startup took to index the disk tier.",
                ),
                graph(
                    "Answers by status",
                    "reqps",
                    [
                        (
                            summed(f"{per}, status", "encore_requests_total", n),
                            "{{instance}} {{status}}",
                        )
                    ],
                ),
                graph(
                    "Egress by tier",
                    "Bps",
                    [
                        (
                            summed(f"{per}, tier", "encore_response_bytes_total", n),
                            "{{instance}} {{tier}}",
                        )
                    ],
                ),
                graph("Time to first byte", "s", ttfb(n, per)),
                graph(
                    "SLO burn rates (5m)",
                    "suffix:x",
                    [
                        *burn("instance", "availability", AVAILABILITY_BUDGET, sel, "instance"),
                        *burn("instance", "hit_latency", HIT_LATENCY_BUDGET, sel, "instance"),
                    ],
                    description="Availability (first) and hit latency (second) error ratios "
                    "over their budgets.",
                    width=12,
                ),
            ],
        ),
        (
            "Cache",
            [
                graph(
                    "Byte and slice hit ratios",
                    "percentunit",
                    [
                        (f"instance:encore_byte_hit_ratio:rate5m{{{sel}}}", "{{instance}} bytes"),
                        (
                            f"instance:encore_cache_hit_ratio:rate5m{{{sel}}}",
                            "{{instance}} {{tier}} slices",
                        ),
                    ],
                ),
                graph(
                    "Cache size",
                    "bytes",
                    [
                        (
                            f"sum by ({per}, tier) (encore_cache_bytes{{{n}}})",
                            "{{instance}} {{tier}}",
                        )
                    ],
                ),
                graph(
                    "Evictions and refusals",
                    "ops",
                    [
                        (
                            summed(f"{per}, tier", "encore_cache_evictions_total", n),
                            "{{instance}} {{tier}} evicted",
                        ),
                        (
                            f"sum by ({per}, tier) "
                            f"(rate(encore_cache_admissions_refused_total{{{n}}}{RATE}))",
                            "{{instance}} {{tier}} refused",
                        ),
                    ],
                ),
                graph(
                    "Disk health",
                    "ops",
                    [
                        (
                            summed(f"{per}", "encore_disk_damaged_slices_total", n),
                            "{{instance}} damaged",
                        ),
                        (
                            f"sum by ({per}) (rate(encore_cache_admissions_refused_total"
                            f'{{{n},tier="disk"}}{RATE}))',
                            "{{instance}} refused",
                        ),
                    ],
                ),
                graph(
                    "Prefetch",
                    "ops",
                    [
                        (
                            summed(f"{per}, reason", "encore_prefetch_issued_total", n),
                            "{{instance}} issued {{reason}}",
                        ),
                        (
                            summed(f"{per}", "encore_prefetch_used_total", n),
                            "{{instance}} used",
                        ),
                        (
                            summed(f"{per}", "encore_prefetch_wasted_total", n),
                            "{{instance}} wasted",
                        ),
                        (
                            summed(f"{per}, reason", "encore_prefetch_skipped_total", n),
                            "{{instance}} skipped {{reason}}",
                        ),
                    ],
                ),
                graph(
                    "Next-track hints",
                    "reqps",
                    [
                        (
                            f"sum by ({per}, outcome) "
                            f"(rate(encore_next_track_hints_total{{{n}}}{RATE}))",
                            "{{instance}} {{outcome}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Origin protection",
            [
                graph(
                    "Origin requests by outcome",
                    "reqps",
                    [
                        (
                            f"sum by ({per}, operation, outcome) "
                            f"(rate(encore_origin_requests_total{{{n}}}{RATE}))",
                            "{{instance}} {{operation}} {{outcome}}",
                        ),
                        (
                            summed(f"{per}, reason", "encore_origin_retries_total", n),
                            "{{instance}} retry {{reason}}",
                        ),
                    ],
                ),
                graph(
                    "Circuit breaker",
                    "none",
                    [
                        (f"max by ({per}) (encore_origin_breaker_state{{{n}}})", "{{instance}}"),
                        (
                            f"sum by ({per}, state) "
                            f"(increase(encore_origin_breaker_transitions_total{{{n}}}{RATE}))",
                            "{{instance}} entered {{state}}",
                        ),
                    ],
                    description="State: 0 closed, 1 half-open, 2 open; and the transitions.",
                ),
                graph(
                    "Fills and coalescing",
                    "ops",
                    [
                        (
                            summed(f"{per}, kind", "encore_origin_fills_total", n),
                            "{{instance}} fill {{kind}}",
                        ),
                        (
                            summed(f"{per}, outcome", "encore_fill_waits_total", n),
                            "{{instance}} waited {{outcome}}",
                        ),
                        (
                            f"sum by ({per}) "
                            f"(rate(encore_origin_duplicate_fetches_total{{{n}}}{RATE}))",
                            "{{instance}} duplicate",
                        ),
                    ],
                ),
                graph(
                    "Manifest lookups",
                    "ops",
                    [
                        (
                            summed(f"{per}, result", "encore_manifest_lookups_total", n),
                            "{{instance}} {{result}}",
                        )
                    ],
                ),
            ],
        ),
        (
            "Clients and admin",
            [
                graph(
                    "Refusals",
                    "reqps",
                    [
                        (
                            summed(f"{per}, reason", "encore_license_denials_total", n),
                            "{{instance}} 451 {{reason}}",
                        ),
                        (
                            f"sum by ({per}, reason) "
                            f"(rate(encore_signature_rejections_total{{{n}}}{RATE}))",
                            "{{instance}} 403 {{reason}}",
                        ),
                    ],
                ),
                graph(
                    "Connections cut, log lines dropped",
                    "ops",
                    [
                        (
                            summed(f"{per}", "encore_send_timeouts_total", n),
                            "{{instance}} send timeouts",
                        ),
                        (
                            f"sum by ({per}) "
                            f"(rate(encore_access_log_dropped_lines_total{{{n}}}{RATE}))",
                            "{{instance}} access log dropped",
                        ),
                    ],
                ),
                graph(
                    "Admin API",
                    "ops",
                    [
                        (
                            summed(f"{per}", "encore_purges_total", n),
                            "{{instance}} purges",
                        ),
                        (
                            f"sum by ({per}, outcome) "
                            f"(rate(encore_admin_auth_failures_total{{{n}}}{RATE}))",
                            "{{instance}} auth {{outcome}}",
                        ),
                    ],
                ),
            ],
        ),
    ]
    return with_rows(board, rows)
