from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge.errors import PreconditionFailed
from edge.preconditions import Outcome, evaluate, http_date, range_applies

ETAG = '"abc"'
MODIFIED = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
MODIFIED_HTTP = "Fri, 01 May 2026 12:00:00 GMT"


def test_http_date_drops_sub_seconds() -> None:
    assert http_date(MODIFIED) == MODIFIED_HTTP


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, Outcome.PROCEED),
        ({"If-None-Match": ETAG}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": 'W/"abc"'}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": '"x,y", "abc"'}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": "*"}, Outcome.NOT_MODIFIED),
        ({"If-None-Match": '"abcd"'}, Outcome.PROCEED),
        ({"If-None-Match": "garbage"}, Outcome.PROCEED),
        ({"If-Modified-Since": MODIFIED_HTTP}, Outcome.NOT_MODIFIED),
        ({"If-Modified-Since": "Thu, 30 Apr 2026 12:00:00 GMT"}, Outcome.PROCEED),
        ({"If-Modified-Since": "yesterday"}, Outcome.PROCEED),
        # If-None-Match wins over If-Modified-Since.
        ({"If-None-Match": '"other"', "If-Modified-Since": MODIFIED_HTTP}, Outcome.PROCEED),
        ({"If-Match": ETAG}, Outcome.PROCEED),
    ],
)
def test_evaluate(headers: dict[str, str], outcome: Outcome) -> None:
    assert evaluate(headers, ETAG, MODIFIED) is outcome


@pytest.mark.parametrize(
    "headers",
    [
        {"If-Match": '"other"'},
        {"If-Match": 'W/"abc"'},  # If-Match compares strongly
        {"If-Unmodified-Since": "Thu, 30 Apr 2026 12:00:00 GMT"},
    ],
)
def test_precondition_failed(headers: dict[str, str]) -> None:
    with pytest.raises(PreconditionFailed):
        evaluate(headers, ETAG, MODIFIED)


@pytest.mark.parametrize(
    ("value", "applies"),
    [
        (ETAG, True),
        ('W/"abc"', False),
        ('"other"', False),
        (MODIFIED_HTTP, True),
        ("Thu, 30 Apr 2026 12:00:00 GMT", False),
        ("nonsense", False),
    ],
)
def test_if_range(value: str, applies: bool) -> None:
    assert range_applies({"If-Range": value}, ETAG, MODIFIED) is applies
    assert range_applies({}, ETAG, MODIFIED) is True
