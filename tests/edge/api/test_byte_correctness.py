"""Property: whatever ranges a player asks for, the bytes served equal the original object's."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_SLICE_BYTES, Catalog, S3Target, make_settings
from tests.support.edge_server import EdgeServer, Reply

SLICE = TEST_SLICE_BYTES
# Sizes around and between slice boundaries, none a multiple of the slice size.
SIZES = [1, 777, SLICE - 1, SLICE + 1, 3 * SLICE + 4321, 9 * SLICE + 17]


@pytest.fixture(scope="module")
def objects(catalog: Catalog) -> list[tuple[str, bytes]]:
    published = []
    for size in SIZES:
        data = os.urandom(size)
        manifest = catalog.publish({"160": data})
        published.append((f"/v1/tracks/{manifest.track_id}/160", data))
    return published


@pytest.fixture(scope="module", params=["small-memory", "no-memory"])
def churning_edge(request: pytest.FixtureRequest, s3: S3Target) -> Iterator[EdgeServer]:
    # A memory tier of three slices keeps evicting, so requests mix hits, misses and partials.
    memory = 3 * SLICE if request.param == "small-memory" else 0
    edge = EdgeServer(
        make_settings(s3.endpoint_url, s3.bucket, cache={"memory_bytes": memory})
    ).start()
    yield edge
    edge.stop()


def _spec(kind: str, a: int, b: int) -> str:
    if kind == "suffix":
        return f"-{a + 1}"
    if kind == "open":
        return f"{a}-"
    return f"{min(a, b)}-{max(a, b)}"


def _expected_bytes(specs: list[tuple[str, int, int]], size: int) -> set[int] | None:
    """An independent model: the set of byte offsets the request covers (None: nothing)."""
    covered: set[int] = set()
    for kind, a, b in specs:
        if kind == "suffix":
            covered.update(range(max(0, size - (a + 1)), size))
        elif kind == "open":
            covered.update(range(a, size))
        else:
            covered.update(range(min(a, b), min(max(a, b), size - 1) + 1))
    return covered or None


def _served(reply: Reply, size: int, data: bytes) -> set[int]:
    if (reply.header("Content-Type") or "").startswith("multipart/byteranges"):
        parts = reply.multipart_parts()
    else:
        parts = [(reply.header("Content-Range") or "", reply.body)]
    covered: set[int] = set()
    for content_range, body in parts:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range)
        assert match, content_range
        start, end, total = map(int, match.groups())
        assert total == size
        assert body == data[start : end + 1], f"wrong bytes for {content_range}"
        assert covered.isdisjoint(range(start, end + 1)), "parts overlap"
        covered.update(range(start, end + 1))
    return covered


range_specs = st.lists(
    st.tuples(
        st.sampled_from(["closed", "open", "suffix"]),
        st.integers(0, 10 * SLICE),
        st.integers(0, 10 * SLICE),
    ),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, len(SIZES) - 1), specs=range_specs)
def test_any_ranges_return_the_original_bytes(
    churning_edge: EdgeServer,
    objects: list[tuple[str, bytes]],
    which: int,
    specs: list[tuple[str, int, int]],
) -> None:
    path, data = objects[which]
    size = len(data)
    header = "bytes=" + ",".join(_spec(*spec) for spec in specs)
    reply = churning_edge.get(path, Range=header)
    expected = _expected_bytes(specs, size)
    if expected is None:
        assert reply.status == 416
        assert reply.header("Content-Range") == f"bytes */{size}"
        return
    assert reply.status == 206, header
    assert reply.header("Content-Length") == str(len(reply.body))
    assert _served(reply, size, data) == expected


@settings(max_examples=20, deadline=None)
@given(which=st.integers(0, len(SIZES) - 1))
def test_whole_object_is_exact(
    churning_edge: EdgeServer, objects: list[tuple[str, bytes]], which: int
) -> None:
    path, data = objects[which]
    reply = churning_edge.get(path)
    assert reply.status == 200
    assert reply.body == data
