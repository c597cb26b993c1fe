"""Human-readable byte sizes: ``256KiB``, ``20GB``, ``1.5GiB``, or a bare integer of bytes.

Parsed exactly (a decimal fraction times the unit, in integers: no float rounding of large
counts), and a size must come to whole bytes: ``0.5B`` or ``1.0001KiB`` is refused.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: str | int) -> int:
    """The number of bytes ``value`` names; ValueError with the reason if it names none.

    Bare K/M/G are refused on purpose: whether they mean 1000 or 1024 is a guess we won't make.
    """
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256KiB or 20GB, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"expected a size such as 256KiB or 20GB, got {value!r}")
    number, unit = match.groups()
    multiplier = _UNITS.get(unit.lower())
    if multiplier is None:
        units = "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB"
        raise ValueError(f"unknown size unit {unit!r} in {value!r} (use one of {units})")
    exact = Fraction(number) * multiplier
    if exact.denominator != 1:
        raise ValueError(f"{value!r} is not a whole number of bytes ({float(exact):.6g})")
    return int(exact)


def format_size(n: int) -> str:
    """Render ``n`` bytes with the largest binary unit that keeps it readable."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:.4g}{unit}"
    return f"{n}B"
