"""RFC 9110 conditional requests: the evaluation order, entity-tag matching, If-Range, and dates
that are not dates (ignored, as if the header were absent: never an error), at unit level and
over HTTP on both track routes."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

import pytest

from edge.http.errors import PreconditionFailed
from edge.http.preconditions import Outcome, evaluate, http_date, parse_http_date, range_applies
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import EdgeServer

ETAG = '"abc"'
MODIFIED = datetime(2026, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
MODIFIED_HTTP = "Fri, 01 May 2026 12:00:00 GMT"


def test_http_date_drops_sub_seconds() -> None:
    assert http_date(MODIFIED) == MODIFIED_HTTP


@pytest.mark.parametrize(
    ("headers", "outcome"),
    [
        ({}, Outcome.PROCEED),
        ({"if-none-match": ETAG}, Outcome.NOT_MODIFIED),
        ({"if-none-match": 'W/"abc"'}, Outcome.NOT_MODIFIED),
        ({"if-none-match": '"x,y", "abc"'}, Outcome.NOT_MODIFIED),
        ({"if-none-match": "*"}, Outcome.NOT_MODIFIED),
        ({"if-none-match": '"abcd"'}, Outcome.PROCEED),
        ({"if-none-match": "garbage"}, Outcome.PROCEED),
        ({"if-modified-since": MODIFIED_HTTP}, Outcome.NOT_MODIFIED),
        ({"if-modified-since": "Thu, 30 Apr 2026 12:00:00 GMT"}, Outcome.PROCEED),
        ({"if-modified-since": "yesterday"}, Outcome.PROCEED),
        # If-None-Match wins over If-Modified-Since.
        ({"if-none-match": '"other"', "if-modified-since": MODIFIED_HTTP}, Outcome.PROCEED),
        ({"if-match": ETAG}, Outcome.PROCEED),
    ],
)
def test_evaluate(headers: dict[str, str], outcome: Outcome) -> None:
    assert evaluate(headers, ETAG, MODIFIED) is outcome


@pytest.mark.parametrize(
    "headers",
    [
        {"if-match": '"other"'},
        {"if-match": 'W/"abc"'},  # If-Match compares strongly
        {"if-unmodified-since": "Thu, 30 Apr 2026 12:00:00 GMT"},
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
    assert range_applies({"if-range": value}, ETAG, MODIFIED) is applies
    assert range_applies({}, ETAG, MODIFIED) is True


# Dates the standard library's parser chokes on with OverflowError (not ValueError): a field
# far too large for a C long. Each used to turn a conditional request into a 500.
INVALID_DATES = [
    "Mon, 99999999999999999999 Jan 2026 00:00:00 GMT",
    "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",
    "Mon, 01 Jan 2026 99999999999999999999:00:00 GMT",
    "Mon, 01 Jan 2026 00:00:00 +99999999999999999999",
]


@pytest.mark.parametrize("value", INVALID_DATES)
def test_a_date_out_of_any_range_parses_as_no_date(value: str) -> None:
    assert parse_http_date(value) is None


@pytest.mark.parametrize("value", INVALID_DATES)
def test_an_invalid_date_in_a_condition_is_ignored(value: str) -> None:
    assert evaluate({"if-modified-since": value}, ETAG, MODIFIED) is Outcome.PROCEED
    assert evaluate({"if-unmodified-since": value}, ETAG, MODIFIED) is Outcome.PROCEED
    # Ignored, not fatal: the other conditions still decide.
    both = {"if-unmodified-since": value, "if-none-match": ETAG}
    assert evaluate(both, ETAG, MODIFIED) is Outcome.NOT_MODIFIED


@pytest.mark.parametrize("value", INVALID_DATES)
def test_an_invalid_if_range_date_means_the_whole_body(value: str) -> None:
    assert range_applies({"if-range": value}, ETAG, MODIFIED) is False


@pytest.mark.parametrize("header", ["if-modified-since", "if-unmodified-since", "if-range"])
def test_invalid_dates_over_http_are_answered_as_if_absent(
    edge: EdgeServer, catalog: Catalog, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    data = os.urandom(2 * TEST_SLICE_BYTES)
    manifest = catalog.publish({"160": data})
    track = f"/v1/tracks/{manifest.track_id}"
    with caplog.at_level(logging.ERROR):
        for value in INVALID_DATES:
            reply = edge.get(track, **{header: value})
            assert reply.status == 200, (value, reply.body)
            assert json.loads(reply.body)["track_id"] == manifest.track_id
            reply = edge.get(f"{track}/160", Range="bytes=10-19", **{header: value})
            if header == "if-range":  # the condition cannot hold: the whole body, no range
                assert (reply.status, reply.header("Content-Range")) == (200, None), value
                assert reply.body == data
            else:
                assert (reply.status, reply.body) == (206, data[10:20]), value
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
