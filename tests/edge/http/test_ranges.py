from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http.errors import RangeNotSatisfiable
from edge.http.ranges import MAX_RANGES, ByteRange, parse_range


def test_ignores_other_units_and_garbage_without_equals() -> None:
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes", 10) is None


def test_forms() -> None:
    assert parse_range("bytes=0-4", 10) == [ByteRange(0, 4)]
    assert parse_range("bytes=5-", 10) == [ByteRange(5, 9)]
    assert parse_range("bytes=-3", 10) == [ByteRange(7, 9)]
    assert parse_range("bytes=-30", 10) == [ByteRange(0, 9)]
    assert parse_range("bytes=8-100", 10) == [ByteRange(8, 9)]
    assert parse_range("bytes= 1-1 ,\t3-3,", 10) == [ByteRange(1, 1), ByteRange(3, 3)]


def test_unsatisfiable_ranges_are_dropped_if_others_remain() -> None:
    assert parse_range("bytes=50-60,0-0", 10) == [ByteRange(0, 0)]
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range("bytes=50-60,-0", 10)
    assert caught.value.headers == {"Content-Range": "bytes */10"}


def test_coalesces_overlapping_and_adjacent_keeping_request_order() -> None:
    assert parse_range("bytes=6-7,0-1,1-2,3-3", 10) == [ByteRange(6, 7), ByteRange(0, 3)]
    assert parse_range("bytes=0-9,2-3", 10) == [ByteRange(0, 9)]


def test_limits_the_number_of_ranges() -> None:
    spec = ",".join(f"{2 * i}-{2 * i}" for i in range(MAX_RANGES + 1))
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range("bytes=" + spec, 1000)
    assert caught.value.code == "too_many_ranges"


@given(st.text(max_size=60))
def test_never_crashes_on_any_header(header: str) -> None:
    try:
        result = parse_range(header, 1000)
    except RangeNotSatisfiable:
        return
    for r in result or []:
        assert 0 <= r.start <= r.end < 1000


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=1, max_size=8))
def test_result_is_disjoint_and_covers_the_request(pairs: list[tuple[int, int]]) -> None:
    size = 150
    header = "bytes=" + ",".join(f"{min(a, b)}-{max(a, b)}" for a, b in pairs)
    wanted = {i for a, b in pairs for i in range(min(a, b), min(max(a, b), size - 1) + 1)}
    if not wanted:
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
        return
    result = parse_range(header, size)
    assert result is not None
    covered: list[int] = [i for r in result for i in range(r.start, r.end + 1)]
    assert len(covered) == len(set(covered))
    assert set(covered) == wanted
