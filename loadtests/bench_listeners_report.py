"""The numbers of ``loadtests.bench_listeners``: what it shows of each Locust pass, the
issue's targets, the load generator's CPU peak, and the report's table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loadtests.bench_listeners_origin import RTT_PROBES
from loadtests.edge_process import metric_sum

SERVERS = ("edge", "nginx")
REBUFFER_TARGET = 0.001  # stall time / play time, at most
STARTUP_ROUND_TRIPS = 2  # startup p95 <= this many origin round trips + the warm TTFB
CLIENT_BOUND = 0.9  # Locust's CPU share of its cores above which a pass is client-bound
PEAK_WINDOW_S = 5.0


# --- CPU ---------------------------------------------------------------------------------------


def peak_share(samples: Sequence[tuple[float, float]], window_s: float = PEAK_WINDOW_S) -> float:
    """The highest CPU rate (cores) over any ``window_s`` between samples of (time, CPU s);
    the whole span's rate when it is shorter than the window; 0 without two samples."""
    best = 0.0
    if len(samples) < 2:
        return best
    if samples[-1][0] - samples[0][0] < window_s:
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else best
    j = 0
    for i, (t0, c0) in enumerate(samples):
        j = max(j, i + 1)
        while j < len(samples) and samples[j][0] - t0 < window_s:
            j += 1
        if j == len(samples):
            break
        t1, c1 = samples[j]
        best = max(best, (c1 - c0) / (t1 - t0))
    return best


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The machine's busy share between two :func:`machine_busy_ticks`."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else None


def machine_busy_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


# --- results -----------------------------------------------------------------------------------


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def pass_row(qoe: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one QoE report this benchmark shows (milliseconds where times)."""
    startup = qoe["startup_s"]
    ranges = qoe["ttfb_s"].get("range", {})
    return {
        "plays": qoe["plays"],
        "startups": startup["count"],
        "startup_p50_ms": _ms(startup["p50"]),
        "startup_p95_ms": _ms(startup["p95"]),
        "startup_p99_ms": _ms(startup["p99"]),
        "rebuffer_ratio": qoe["rebuffer_ratio"],
        "stalls": qoe["stalls"],
        "stall_time_s": qoe["stall_time_s"],
        "play_time_s": qoe["play_time_s"],
        "failures": sum(qoe["failures"].values()),
        "range_ttfb_p50_ms": _ms(ranges.get("p50")),
        "range_ttfb_p95_ms": _ms(ranges.get("p95")),
        "mean_kbps": None if qoe["mean_bitrate_kbps"] is None else round(qoe["mean_bitrate_kbps"]),
        "requests": sum(qoe["requests"].values()),
    }


def targets(cold: dict[str, Any], warm: dict[str, Any], round_trip_ms: float) -> dict[str, Any]:
    """The issue's targets for one server in one round (the edge's are checked)."""
    warm_ttfb = warm["range_ttfb_p95_ms"]
    budget = (
        None if warm_ttfb is None else round(STARTUP_ROUND_TRIPS * round_trip_ms + warm_ttfb, 1)
    )
    startup = cold["startup_p95_ms"]
    rebuffer = cold["rebuffer_ratio"]
    return {
        "startup_budget_ms": budget,
        "startup_ok": startup is not None and budget is not None and startup <= budget,
        "rebuffer_ok": rebuffer is not None and rebuffer <= REBUFFER_TARGET,
    }


def pooled_rebuffer(rows: Sequence[dict[str, Any]]) -> float | None:
    played = sum(r["play_time_s"] for r in rows)
    return sum(r["stall_time_s"] for r in rows) / played if played else None


def client_bound(result: dict[str, Any]) -> bool:
    return bool(result["locust"]["peak_share"] >= CLIENT_BOUND)


def missed(rounds: Sequence[dict[str, Any]]) -> list[str]:
    lines = []
    for r in rounds:
        if r["server"] != "edge":
            continue
        t, cold = r["targets"], r["cold"]["row"]
        if not t["rebuffer_ok"]:
            lines.append(f"round {r['round']}: rebuffer ratio {pct(cold['rebuffer_ratio'])}")
        if not t["startup_ok"]:
            lines.append(
                f"round {r['round']}: startup p95 {fmt(cold['startup_p95_ms'])} ms "
                f"> {fmt(t['startup_budget_ms'])} ms"
            )
    return lines


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pct(share: float | None, digits: int = 3) -> str:
    return "-" if share is None else f"{share * 100:.{digits}f}%"


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f}"


def _cpu(result: dict[str, Any]) -> str:
    locust = result["locust"]
    mark = "*" if client_bound(result) else " "
    return f"{locust['share']:.0%}/{locust['peak_share']:.0%}{mark}"


# (heading, second heading line, width) of the table's columns
COLD_COLUMNS = (
    ("plays", "", 6), ("cold", "tracks", 7), ("startup", "p50", 8), ("", "p95", 6),
    ("", "p99", 6), ("rebuffer", "", 9), ("stalls", "", 7), ("fail", "", 5),
    ("origin", "GETs", 7), ("origin", "MiB", 7), ("origin", "TTFB p95", 9), ("kbps", "", 5),
    ("Locust", "CPU", 11), ("server", "CPU s", 7), ("busy", "", 5),
)  # fmt: skip
WARM_COLUMNS = (
    ("startup", "p95", 8),
    ("TTFB", "p95", 6),
    ("origin", "GETs", 7),
    ("Locust", "CPU", 11),
)
LABEL_WIDTH = 8


def _cells(columns: Sequence[tuple[str, str, int]], values: Sequence[object]) -> str:
    return "".join(f"{fmt(v):>{width}}" for (_, _, width), v in zip(columns, values, strict=True))


def _headings() -> list[str]:
    cold_width = LABEL_WIDTH + sum(width for _, _, width in COLD_COLUMNS)
    return [
        f"{'cold pass, fresh cache':<{cold_width}} | warm pass, right after",
        *(
            " " * LABEL_WIDTH
            + _cells(COLD_COLUMNS, [c[line] for c in COLD_COLUMNS])
            + " |"
            + _cells(WARM_COLUMNS, [c[line] for c in WARM_COLUMNS])
            for line in (0, 1)
        ),
    ]


def _row(result: dict[str, Any]) -> str:
    cold, warm = result["cold"], result["warm"]
    c, w = cold["row"], warm["row"]
    cold_values = (
        c["plays"], cold["origin"]["cold_tracks"], c["startup_p50_ms"], c["startup_p95_ms"],
        c["startup_p99_ms"], pct(c["rebuffer_ratio"]), c["stalls"], c["failures"],
        cold["origin"]["gets"], _mib(cold["origin"]["bytes"]), cold["origin"]["ttfb_p95_ms"],
        c["mean_kbps"], _cpu(cold), cold["server_cpu_s"], _fmt_share(cold["machine_busy"]),
    )  # fmt: skip
    warm_values = (w["startup_p95_ms"], w["range_ttfb_p95_ms"], warm["origin"]["gets"], _cpu(warm))
    label = f"{result['server']} {result['round']}"
    return (
        f"{label:<{LABEL_WIDTH}}{_cells(COLD_COLUMNS, cold_values)} |"
        f"{_cells(WARM_COLUMNS, warm_values)}"
    )


def table(document: dict[str, Any]) -> str:
    """The report: the command, the setup, one line per server and round, the targets."""
    config = document["config"]
    catalogue = document["catalogue"]
    rtt = document["origin_round_trip_ms"]
    lines = [
        f"command: {document['command']}",
        f"listeners: {config['listeners']} (spawned at {config['spawn_rate']:g}/s), speed "
        f"{config['speed']:g}, popularity {config['popularity']}, Locust processes "
        f"{config['locust_processes']}",
        f"catalogue: {catalogue['size']} tracks ({config['tracks']} of {config['track_seconds']}"
        f" s ingested in {catalogue['ingest_s']} s, each published under {config['copies']} ids)",
        f"origin: +{config['latency_ms']:g} ms a request (round trip of a 256 KiB range: {rtt} "
        f"ms, median of {RTT_PROBES}); {config['workers']} worker processes per server",
        f"rounds: {config['rounds']} x ({config['seconds']} s cold + {config['warm_seconds']} s "
        f"warm) per server; {config['cpus']} CPUs, "
        f"{_fmt_share(document['machine_busy_before'])} busy before the rounds (others' work)",
        "",
        *_headings(),
        *(_row(r) for r in document["rounds"]),
    ]
    lines += [
        "",
        "times in ms; cold tracks: those whose manifest the server fetched from the origin; "
        "startup: press play to 2 s of audio",
        "buffered, manifest included; rebuffer: stall time / play time; origin GETs, MiB "
        "(responses, heads included) and TTFB p95",
        "(first byte of each answer from its request's arrival, the added latency included): "
        "at each server's origin proxy;",
        "kbps: mean bitrate played; Locust CPU: mean/busiest 5 s, share of its cores "
        f"(* client-bound, >= {CLIENT_BOUND:.0%}); server CPU s: its",
        "process tree's; busy: the whole machine's CPU over the pass; warm TTFB: range "
        "requests' time to first byte at the listener",
        "",
    ]
    for name in SERVERS:
        mine = [r for r in document["rounds"] if r["server"] == name]
        if not mine:
            continue
        checked = name == "edge"
        parts = [_target_line(r, rtt, checked) for r in mine]
        rows = [r["cold"]["row"] for r in mine]
        label = "edge targets" if name == "edge" else "nginx, same formula (not checked)"
        lines.append(
            f"{label}: " + "; ".join(parts) + f"; pooled rebuffer {pct(pooled_rebuffer(rows))}"
        )
    for r in document["rounds"]:
        if "edge_metrics" in r["cold"]:
            lines.append(f"edge {r['round']} cold pass, its /metrics: " + _edge_summary(r["cold"]))
    bound = [f"{r['server']} {r['round']}" for r in document["rounds"] if client_bound(r["cold"])]
    if bound:
        lines.append(
            f"client-bound cold passes: {', '.join(bound)}: Locust's busiest 5 s reached "
            f"{CLIENT_BOUND:.0%} of its cores there; try --locust-processes 2 or fewer listeners"
        )
    return "\n".join(lines)


def _target_line(result: dict[str, Any], rtt_ms: float, checked: bool) -> str:
    t, cold = result["targets"], result["cold"]["row"]

    def verdict(ok: bool) -> str:
        return (" ok" if ok else " MISS") if checked else ""

    return (
        f"round {result['round']}: rebuffer {pct(cold['rebuffer_ratio'])} <= "
        f"{pct(REBUFFER_TARGET, 1)}{verdict(t['rebuffer_ok'])}, startup p95 "
        f"{fmt(cold['startup_p95_ms'])} <= {STARTUP_ROUND_TRIPS} x {rtt_ms} + "
        f"{fmt(result['warm']['row']['range_ttfb_p95_ms'])} = "
        f"{fmt(t['startup_budget_ms'])}{verdict(t['startup_ok'])}"
    )


def _edge_summary(cold: dict[str, Any]) -> str:
    """The edge's own counts of a cold pass: fills, waits, prefetch, manifest lookups."""
    values: dict[str, float] = cold["edge_metrics"]

    def by(name: str, label: str) -> str:
        found: dict[str, int] = {}
        for series, value in values.items():
            if series.split("{", 1)[0] == name and value:
                match = re.search(label + r'="([^"]*)"', series)
                key = match.group(1) if match else "-"
                found[key] = found.get(key, 0) + int(value)
        return ", ".join(f"{k} {n}" for k, n in sorted(found.items())) or "none"

    used = int(metric_sum(values, "encore_prefetch_used_total") or 0)
    wasted = int(metric_sum(values, "encore_prefetch_wasted_total") or 0)
    return (
        f"fills ({by('encore_origin_fills_total', 'kind')}); fill waits "
        f"({by('encore_fill_waits_total', 'outcome')}); prefetch issued "
        f"({by('encore_prefetch_issued_total', 'reason')}), used {used}, wasted {wasted}, "
        f"skipped ({by('encore_prefetch_skipped_total', 'reason')}); manifests "
        f"({by('encore_manifest_lookups_total', 'result')}); origin retries "
        f"({by('encore_origin_retries_total', 'reason')})"
    )


def _fmt_share(share: float | None) -> str:
    return "-" if share is None else f"{share:.0%}"
