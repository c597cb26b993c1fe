"""The licensing decision: may a track be served in a region at a moment? A pure function,
and its enforcement (a 451 and a metric) for every path that serves or fetches audio.

Deny wins over allow; ``*`` stands for every region; the window is ``[not_before,
not_after)``. A track without a licence is served nowhere (fail closed).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from edge.http.errors import NotLicensed
from edge.telemetry import metrics
from origin.license import ANY_REGION, License

OTHER_REGION = "other"  # the metric label of a region the config does not name


class Denial(enum.Enum):
    """Why a track may not be served (also the JSON reason code)."""

    REGION = "region"
    WINDOW = "window"
    NO_LICENCE = "no_licence"


def decide(licence: License | None, region: str, now: datetime) -> Denial | None:
    """None when serving is allowed, else the reason it is not."""
    if licence is None:
        return Denial.NO_LICENCE
    if region in licence.deny or ANY_REGION in licence.deny:
        return Denial.REGION
    if region not in licence.allow and ANY_REGION not in licence.allow:
        return Denial.REGION
    if licence.not_before is not None and now < licence.not_before:
        return Denial.WINDOW
    if licence.not_after is not None and now >= licence.not_after:
        return Denial.WINDOW
    return None


class LicenceGate:
    """Refuses (451) what ``decide`` denies, and counts it. Only regions named in the config
    (``labelled_regions``) become metric labels, so a header cannot grow the label set."""

    def __init__(self, labelled_regions: Iterable[str]) -> None:
        self._labelled = frozenset(labelled_regions)

    def metric_region(self, region: str) -> str:
        """The ``region`` metric label of a client region: itself if the config names it."""
        return region if region in self._labelled else OTHER_REGION

    def enforce(
        self, track_id: str, licence: License | None, region: str, now: datetime | None = None
    ) -> None:
        denial = decide(licence, region, now or datetime.now(UTC))
        if denial is not None:
            self._refuse(track_id, region, denial)

    def enforce_remembered(
        self,
        track_id: str,
        licence: License | None,
        region: str,
        decisions: dict[str, tuple[str | None, float]],
    ) -> None:
        """As :meth:`enforce`, remembering the decision in ``decisions`` (one loaded
        manifest's) per region until the next edge of the licence's window, when it may
        change: a hit does not decide again."""
        now = time.time()
        known = decisions.get(region)
        if known is None or now >= known[1]:
            moment = datetime.fromtimestamp(now, UTC)
            denial = decide(licence, region, moment)
            known = (None if denial is None else denial.value, _next_edge(licence, moment))
            decisions[region] = known
        if known[0] is not None:
            self._refuse(track_id, region, Denial(known[0]))

    def _refuse(self, track_id: str, region: str, denial: Denial) -> None:
        metrics.LICENSE_DENIALS.labels(denial.value, self.metric_region(region)).inc()
        raise NotLicensed(
            _MESSAGES[denial].format(track=track_id, region=region), reason=denial.value
        )


def _next_edge(licence: License | None, now: datetime) -> float:
    """When the decision for ``licence`` may next change (a Unix time; infinity: never)."""
    if licence is None:
        return math.inf
    edges = [e for e in (licence.not_before, licence.not_after) if e is not None and e > now]
    return min(edges).timestamp() if edges else math.inf


_MESSAGES = {
    Denial.REGION: "track {track!r} is not licensed in region {region}",
    Denial.WINDOW: "track {track!r} is outside its licence window (not yet or no longer)",
    Denial.NO_LICENCE: "track {track!r} has no licence data, so it is served nowhere",
}
