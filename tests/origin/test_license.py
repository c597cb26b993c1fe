from __future__ import annotations

from datetime import UTC, datetime

import pytest

from origin.license import KEEP, License, LicenseChange, parse_instant, parse_regions


def test_regions_are_normalised_and_checked() -> None:
    assert parse_regions("se, NO,dk,SE") == ("SE", "NO", "DK")
    assert parse_regions("*") == ("*",)
    assert parse_regions("") == ()
    with pytest.raises(ValueError, match=r"'XX' is not an ISO 3166-1 alpha-2 region code$"):
        parse_regions("SE,XX")
    with pytest.raises(ValueError, match=r"'uk' is not .* \(use GB\)"):
        parse_regions("uk")
    with pytest.raises(ValueError, match="'SWE' is not"):
        parse_regions("SWE")


def test_instants_default_to_utc_and_can_be_cleared() -> None:
    assert parse_instant("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_instant("2026-12-01T18:00:00") == datetime(2026, 12, 1, 18, tzinfo=UTC)
    assert parse_instant("2026-12-01T18:00:00+01:00") == datetime(2026, 12, 1, 17, tzinfo=UTC)
    assert parse_instant("none") is None
    assert parse_instant("") is None
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        parse_instant("next friday")
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        parse_instant("2026-13-01")


def test_a_change_keeps_what_it_does_not_set() -> None:
    current = License(allow=("SE",), deny=("US",), not_before=datetime(2026, 1, 1, tzinfo=UTC))
    changed = LicenseChange(allow=("SE", "NO")).apply(current)
    assert changed == License(
        allow=("SE", "NO"), deny=("US",), not_before=datetime(2026, 1, 1, tzinfo=UTC)
    )
    cleared = LicenseChange(not_before=None).apply(current)
    assert cleared.not_before is None
    assert LicenseChange().is_empty
    assert not LicenseChange(deny=()).is_empty
    assert LicenseChange(allow=("*",)).apply(None) == License(allow=("*",))
    assert LicenseChange(not_after=KEEP).is_empty


def test_window_must_run_forwards() -> None:
    with pytest.raises(ValueError, match="must be earlier than"):
        License(
            allow=("*",),
            not_before=datetime(2027, 1, 1, tzinfo=UTC),
            not_after=datetime(2026, 1, 1, tzinfo=UTC),
        )
    with pytest.raises(ValueError, match="time zone"):
        License(allow=("*",), not_after=datetime(2026, 1, 1))


def test_describe_is_one_short_line() -> None:
    assert License(allow=("SE", "NO")).describe() == "allow SE,NO deny -"
    window = License(
        allow=("*",),
        deny=("US",),
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2026, 6, 1, 12, tzinfo=UTC),
    )
    assert window.describe() == "allow * deny US from 2026-01-01 until 2026-06-01T12:00:00Z"
