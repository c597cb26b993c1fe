"""What players report about their playback (CMCD, ``edge.telemetry.cmcd``), counted as the
``encore_player_*`` metrics by the client's region, and their session id noted for the access
log.

Reports are counted only for requests that passed the signature and licence checks: a client
that may not play cannot move the player metrics. The session id of any track request is
logged, refused ones included (where it helps to follow a failing session).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from edge.http.request import Request
from edge.telemetry import metrics
from edge.telemetry.cmcd import CmcdReport, from_request
from edge.telemetry.cmcd_values import Problem


@dataclass(frozen=True, slots=True)
class _RegionSeries:
    """One client region's player series (looked up once per report, not once per metric)."""

    requests: metrics.CountedSeries
    malformed: dict[Problem, metrics.CountedSeries]
    stalls: metrics.CountedSeries
    startups: metrics.CountedSeries
    buffer_s: metrics.ObservedSeries
    throughput_kbps: metrics.ObservedSeries
    bitrate_kbps: metrics.ObservedSeries


@functools.cache  # labels are the config's regions and "other": a handful
def _series(label: str) -> _RegionSeries:
    return _RegionSeries(
        metrics.player_cmcd_requests(label),
        {problem: metrics.player_cmcd_malformed(label, problem.value) for problem in Problem},
        metrics.player_stalls(label),
        metrics.player_startups(label),
        metrics.player_buffer(label),
        metrics.player_throughput(label),
        metrics.player_bitrate(label),
    )


class PlayerReports:
    """``region_label``: the metric label of a client region
    (``edge.access.licensing.LicenceGate.metric_region``)."""

    def __init__(self, region_label: Callable[[str], str]) -> None:
        self._region_label = region_label

    def read(self, request: Request, region: str) -> CmcdReport | None:
        """The request's CMCD report, counted; None (nothing counted) when it sends none."""
        report = from_request(request)
        if report is None:
            return None
        request.cmcd_sid = report.session_id
        series = _series(self._region_label(region))
        series.requests.inc()
        for problem in report.ignored:
            series.malformed[problem].inc()
        if report.stalled:
            series.stalls.inc()
        if report.startup:
            series.startups.inc()
        if report.buffer_ms is not None:
            series.buffer_s.observe(report.buffer_ms / 1000)
        if report.throughput_kbps is not None:
            series.throughput_kbps.observe(report.throughput_kbps)
        if report.bitrate_kbps is not None:
            series.bitrate_kbps.observe(report.bitrate_kbps)
        return report


def note_session(request: Request) -> None:
    """For a request refused before its report was read: its session id, for the access log."""
    if request.cmcd_sid is None:
        report = from_request(request)
        if report is not None:
            request.cmcd_sid = report.session_id
