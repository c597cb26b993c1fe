from __future__ import annotations

import pytest

from edge.sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("256KiB", 256 * 1024),
        ("20GB", 20 * 10**9),
        ("512MiB", 512 * 1024**2),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("100", 100),
        (" 7 b ", 7),
        ("2tib", 2 * 1024**4),
        (4096, 4096),
    ],
)
def test_parses_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "KiB", "12 parsecs", "1K", "-5", "1e3", "ten", "1..2MB"])
def test_rejects_non_sizes(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|unit"):
        parse_size(text)


def test_rejects_negative_and_boolean() -> None:
    with pytest.raises(ValueError):
        parse_size(-1)
    with pytest.raises(ValueError):
        parse_size(True)


def test_format_size() -> None:
    assert format_size(512) == "512B"
    assert format_size(256 * 1024) == "256KiB"
    assert format_size(3 * 1024**3 // 2) == "1.5GiB"
