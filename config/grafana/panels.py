"""The shared builders of Encore's dashboards: queries, panels, variables, the dashboard's frame
and its rows, and the selectors and SLO budgets they use. The dashboard modules beside it import
it by name: config/grafana is not a package, and generate.py puts this directory on sys.path."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.cog.builder import Builder
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


def with_rows(
    board: dashboard.Dashboard, rows: list[tuple[str, list[Builder[Panel]]]]
) -> dashboard.Dashboard:
    ids = iter(range(1, 1000))  # stable ids: links to a panel survive a regeneration
    for title, panels in rows:
        board = board.with_row(dashboard.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))  # type: ignore[attr-defined]
    return board
