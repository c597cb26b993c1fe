"""The licensing decision: may a track be served in a region at a moment? A pure function.

Deny wins over allow; ``*`` stands for every region; the window is ``[not_before,
not_after)``. A track without a licence is served nowhere (fail closed).
"""

from __future__ import annotations

import enum
from datetime import datetime

from origin.license import ANY_REGION, License


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
