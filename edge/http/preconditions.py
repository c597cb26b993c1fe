"""RFC 9110 conditional requests against a representation's ETag and Last-Modified.

Evaluated in the RFC's order (section 13.2.2): If-Match, If-Unmodified-Since, If-None-Match,
If-Modified-Since; then If-Range decides whether a Range header applies at all.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from edge.http.errors import PreconditionFailed

MAX_DATE_CHARS = 64  # an IMF-fixdate is 29; anything much longer is not a date


class Outcome(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"


@functools.lru_cache(maxsize=4096)  # every response formats its manifest's publish time
def http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def parse_http_date(value: str) -> datetime | None:
    """The date, or None for anything that is not one: RFC 9110 says an invalid date in a
    conditional header is ignored. (The standard library raises more than ValueError on odd
    input, e.g. OverflowError for a day of 99999999999999999999.)"""
    if len(value) > MAX_DATE_CHARS:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _entity_tags(header: str) -> list[str]:
    """Split an ETag list; quoted tags may contain commas."""
    tags: list[str] = []
    i = 0
    while i < len(header):
        if header[i] in " \t,":
            i += 1
            continue
        weak = header.startswith("W/", i)
        quote = i + 2 if weak else i
        if quote >= len(header) or header[quote] != '"':
            break  # not an entity-tag: stop, whatever came before still counts
        close = header.find('"', quote + 1)
        if close < 0:
            break
        tags.append(header[i : close + 1])
        i = close + 1
    return tags


def _weak_match(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(tag.removeprefix("W/") == etag for tag in _entity_tags(header))


def _strong_match(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(tag == etag for tag in _entity_tags(header))


CONDITIONALS = frozenset({"if-match", "if-unmodified-since", "if-none-match", "if-modified-since"})


def evaluate(headers: Mapping[str, str], etag: str, last_modified: datetime) -> Outcome:
    """Decide 412 (raised), 304, or go on, for a GET or HEAD of a strong-ETag representation.
    ``headers`` by lower-case name."""
    modified = last_modified.replace(microsecond=0)
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _strong_match(if_match, etag):
            raise PreconditionFailed("If-Match does not match the current ETag")
    else:
        unmodified_since = parse_http_date(headers.get("if-unmodified-since", ""))
        if unmodified_since is not None and modified > unmodified_since:
            raise PreconditionFailed("modified after If-Unmodified-Since")
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        return Outcome.NOT_MODIFIED if _weak_match(if_none_match, etag) else Outcome.PROCEED
    modified_since = parse_http_date(headers.get("if-modified-since", ""))
    if modified_since is not None and modified <= modified_since:
        return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def range_applies(headers: Mapping[str, str], etag: str, last_modified: datetime) -> bool:
    """False when If-Range names another version: then the whole representation is sent."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith('"'):
        return if_range == etag  # strong comparison; a weak tag never matches
    if if_range.startswith("W/"):
        return False
    date = parse_http_date(if_range)
    return date is not None and date == last_modified.replace(microsecond=0)
