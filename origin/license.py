"""A track's licence: where (ISO 3166-1 alpha-2 regions) and when it may be served.

It lives in the manifest, so changing it rewrites only the manifest. Deny wins over allow; ``*``
stands for every region. A track without a licence is served nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from origin.manifest_schema import ManifestError, is_region

ANY_REGION = "*"

# Codes people type that ISO 3166-1 does not assign, with the one they mean.
_COMMON_MISTAKES = {"UK": "GB", "EL": "GR"}


@dataclass(frozen=True, slots=True)
class License:
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    not_before: datetime | None = None
    not_after: datetime | None = None

    def __post_init__(self) -> None:
        for code in (*self.allow, *self.deny):
            if code != ANY_REGION and not is_region(code):
                raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 region code")
        for moment in (self.not_before, self.not_after):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("licence windows need a time zone")
        if self.not_before and self.not_after and self.not_before >= self.not_after:
            raise ValueError(
                f"not_before ({_iso(self.not_before)}) must be earlier than "
                f"not_after ({_iso(self.not_after)})"
            )

    def to_doc(self) -> dict[str, Any]:
        return {
            "allow": list(self.allow),
            "deny": list(self.deny),
            "not_before": _iso(self.not_before) if self.not_before else None,
            "not_after": _iso(self.not_after) if self.not_after else None,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> License:
        """Build from a schema-checked ``license`` object; the window must make sense."""
        try:
            return cls(
                allow=tuple(doc["allow"]),
                deny=tuple(doc["deny"]),
                not_before=_timestamp(doc.get("not_before")),
                not_after=_timestamp(doc.get("not_after")),
            )
        except ValueError as exc:  # also a timestamp such as 2026-13-45T00:00:00Z
            raise ManifestError(f"license: {exc}") from None

    def describe(self) -> str:
        """One line for ``encore-origin ls``: ``allow SE,NO deny - from 2026-01-01 until -``."""
        parts = [
            f"allow {','.join(self.allow) or '-'}",
            f"deny {','.join(self.deny) or '-'}",
        ]
        if self.not_before or self.not_after:
            parts.append(f"from {_short(self.not_before)} until {_short(self.not_after)}")
        return " ".join(parts)


class Keep(Enum):
    """A licence field that a change leaves as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class LicenseChange:
    """What ``encore-origin license`` (or ``ingest``) was told to set; the rest is kept."""

    allow: tuple[str, ...] | Keep = KEEP
    deny: tuple[str, ...] | Keep = KEEP
    not_before: datetime | Keep | None = KEEP
    not_after: datetime | Keep | None = KEEP

    @property
    def is_empty(self) -> bool:
        return all(
            value is KEEP for value in (self.allow, self.deny, self.not_before, self.not_after)
        )

    def apply(self, current: License | None) -> License:
        """The licence after this change; ValueError if the result does not make sense."""
        base = current or License(allow=())
        return License(
            allow=base.allow if self.allow is KEEP else self.allow,
            deny=base.deny if self.deny is KEEP else self.deny,
            not_before=base.not_before if self.not_before is KEEP else self.not_before,
            not_after=base.not_after if self.not_after is KEEP else self.not_after,
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _short(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    utc = moment.astimezone(UTC)
    return utc.date().isoformat() if utc.time() == datetime.min.time() else _iso(utc)


def _timestamp(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def parse_regions(text: str) -> tuple[str, ...]:
    """``"se, NO,dk"`` -> ``("SE", "NO", "DK")``; ``""`` -> ``()``; ``*`` means every region."""
    codes: list[str] = []
    for item in text.split(","):
        code = item.strip().upper()
        if not code:
            continue
        if code != ANY_REGION and not is_region(code):
            hint = _COMMON_MISTAKES.get(code)
            suffix = f" (use {hint})" if hint else ""
            raise ValueError(f"{item.strip()!r} is not an ISO 3166-1 alpha-2 region code{suffix}")
        if code not in codes:
            codes.append(code)
    return tuple(codes)


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or date-time; no time zone means UTC. ``""`` or ``none`` clears it."""
    text = text.strip()
    if text.lower() in {"", "none"}:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or date-time such as 2026-12-01 "
            "or 2026-12-01T18:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
