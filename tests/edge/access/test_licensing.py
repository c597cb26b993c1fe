"""The licensing decision, a pure function of (licence, region, now)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.access.licensing import Denial, decide
from origin.license import License

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
EARLIER, LATER = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("licence", "region", "expected"),
    [
        (License(allow=("*",)), "SE", None),
        (License(allow=("SE", "NO")), "NO", None),
        (License(allow=("SE", "NO")), "DE", Denial.REGION),
        (License(allow=("*",), deny=("US",)), "US", Denial.REGION),
        (License(allow=("US",), deny=("US",)), "US", Denial.REGION),  # deny wins
        (License(allow=("SE",), deny=("*",)), "SE", Denial.REGION),
        (License(allow=(), deny=()), "SE", Denial.REGION),
        (License(allow=("*",), not_before=LATER), "SE", Denial.WINDOW),
        (License(allow=("*",), not_after=EARLIER), "SE", Denial.WINDOW),
        (License(allow=("*",), not_after=NOW), "SE", Denial.WINDOW),  # the end is exclusive
        (License(allow=("*",), not_before=NOW, not_after=LATER), "SE", None),
        (None, "SE", Denial.NO_LICENCE),
    ],
)
def test_decide(licence: License | None, region: str, expected: Denial | None) -> None:
    assert decide(licence, region, NOW) is expected
