"""Byte sizes as the config writes them: units, exactness (no float rounding, whole bytes
only), and how they are printed."""

from __future__ import annotations

import pytest

from origin.sizes import format_size, parse_size


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9007199254740993", 2**53 + 1),  # the first integer a float cannot hold
        ("9007199254740993B", 2**53 + 1),
        ("9007199254740993.0", 2**53 + 1),
        ("12345678901234567891", 12345678901234567891),
        ("8796093022208.0009765625KiB", 2**53 + 1),  # 2**43 KiB and one byte
    ],
)
def test_large_sizes_are_exact(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["0.5B", "1.0001KiB", "1.5", "0.3KiB", "1.0000000000000001TiB"])
def test_a_size_must_come_to_whole_bytes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number of bytes"):
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
