"""Encore's Grafana dashboards as code (grafana-foundation-sdk): writes dashboards/*.json.

    .venv/bin/python config/grafana/generate.py          # rewrite the committed JSON
    .venv/bin/python config/grafana/generate.py --check  # exit 1 if the JSON is out of date

Two dashboards: a region overview and a node drill-down. Both have `datasource`, `region` and
`instance` variables; rates use `$__rate_interval`; every panel has a unit. Ratios come from the
recording rules in config/prometheus/rules/encore-recording.yml (names `level:metric:op`), so a
panel and an alert read the same series.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    Panel,
    VariableRefresh,
    VariableSort,
)

OUT = Path(__file__).resolve().parent / "dashboards"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
JOB = 'job="encore-edge"'
REGION = f'{JOB},region=~"$region"'
NODE = f'{REGION},instance=~"$instance"'
TRACKS = 'route=~"manifest|rendition"'
RATE = "[$__rate_interval]"
# The SLO targets of config/prometheus/rules/encore-alerts.yml: burn rate = error ratio / budget.
AVAILABILITY_BUDGET = 0.001
HIT_LATENCY_BUDGET = 0.01


def query(expr: str, legend: str, ref: int = 0) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + ref))
    ).datasource(DS)


def summed(by: str, metric: str, selector: str, fn: str = "rate") -> str:
    """``sum by (BY) (rate(METRIC{SELECTOR}[$__rate_interval]))``."""
    return f"sum by ({by}) ({fn}({metric}{{{selector}}}{RATE}))"


def graph(
    title: str, unit: str, targets: list[tuple[str, str]], *, description: str = "", width: int = 8
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(DS)
        .span(width)
        .height(8)
        .fill_opacity(10)
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if unit == "percentunit":
        panel = panel.min(0).max(1)
    if description:
        panel = panel.description(description)
    for ref, (expr, legend) in enumerate(targets):
        panel = panel.with_target(query(expr, legend, ref))
    return panel


def single(title: str, unit: str, expr: str, legend: str, *, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DS)
        .span(4)
        .height(4)
        .description(description)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
        .with_target(query(expr, legend).instant())
    )


def variables(board: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        board.with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("region")
            .label("Region")
            .datasource(DS)
            .query(f"label_values(up{{{JOB}}}, region)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            dashboard.QueryVariable("instance")
            .label("Node")
            .datasource(DS)
            .query(f'label_values(up{{{JOB},region=~"$region"}}, instance)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["encore", "cdn"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .link(
            dashboard.DashboardLink("Encore")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["encore"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    return variables(board)


def ttfb(selector: str, by: str) -> list[tuple[str, str]]:
    """p50 and p99 time to first byte, hits and misses apart."""
    out = []
    for q in ("0.5", "0.99"):
        expr = (
            f"histogram_quantile({q}, sum by ({by}, cache, le) "
            f'(rate(encore_ttfb_seconds_bucket{{{selector},cache=~"HIT|MISS"}}{RATE})))'
        )
        out.append((expr, f"p{float(q) * 100:g} {{{{{by}}}}} {{{{cache}}}}"))
    return out


def burn(level: str, sli: str, budget: float, selector: str, label: str) -> list[tuple[str, str]]:
    windows = ("5m", "1h", "6h", "3d") if level == "region" else ("5m",)
    return [
        (
            f"{level}:encore_slo_{sli}_errors:ratio_rate{w}{{{selector}}} / {budget}",
            f"{{{{{label}}}}} {w}",
        )
        for w in windows
    ]


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


def with_rows(
    board: dashboard.Dashboard, rows: list[tuple[str, list[Builder[Panel]]]]
) -> dashboard.Dashboard:
    ids = iter(range(1, 1000))  # stable ids: links to a panel survive a regeneration
    for title, panels in rows:
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))  # type: ignore[attr-defined]
    return board


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed (sorted keys, so diffs stay small)."""
    boards = {
        "encore-region-overview.json": region_overview(),
        "encore-node.json": node_drilldown(),
    }
    return {
        name: json.dumps(board.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
        for name, board in boards.items()
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date: " + ", ".join(stale) + " (run config/grafana/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
