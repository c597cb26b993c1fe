"""``encore-edge warm --top FILE``: pre-position a region's top-N list through the node's
admin API (``POST /admin/warm``), in batches, with a one-line summary.

FILE holds one track id per line (the first field; a play count may follow); blank lines and
``#`` comments are skipped. Every id is checked before anything is sent.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from origin import layout
from origin.settings import Settings

BATCH_TRACKS = 100
TIMEOUT_S = 600.0


class WarmError(Exception):
    """One line for the operator; the command exits 1."""


@dataclass
class WarmSummary:
    tracks: int = 0
    warmed: int = 0
    slices_fetched: int = 0
    slices_cached: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)

    def add(self, answer: dict[str, Any]) -> None:
        self.tracks += int(answer["tracks"])
        self.warmed += int(answer["warmed"])
        self.slices_fetched += int(answer["slices_fetched"])
        self.slices_cached += int(answer["slices_cached"])
        self.failed.extend(answer["failed"])

    def line(self) -> str:
        return (
            f"warmed {self.warmed} of {self.tracks} tracks: {self.slices_fetched} slices "
            f"fetched, {self.slices_cached} already cached, {len(self.failed)} failed"
        )


def read_top_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise WarmError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise WarmError(f"{path} is not UTF-8 text") from None
    ids: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        track_id = text.split()[0]
        if not layout.is_track_id(track_id):
            raise WarmError(f"{path}:{number}: {track_id!r} is not a track id")
        ids[track_id] = None
    if not ids:
        raise WarmError(f"{path} lists no track ids")
    return list(ids)


def admin_url(settings: Settings) -> str:
    host = settings.admin.host
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - listening everywhere: ask locally
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.admin.port}"


def warm(
    settings: Settings,
    top: Path,
    *,
    renditions: list[str] | None = None,
    slices: int | None = None,
    url: str | None = None,
) -> WarmSummary:
    if not settings.admin.token:
        raise WarmError("admin.token is not set, so the node's admin API is off")
    track_ids = read_top_list(top)
    base = url or admin_url(settings)
    summary = WarmSummary()
    for start in range(0, len(track_ids), BATCH_TRACKS):
        body: dict[str, Any] = {"tracks": track_ids[start : start + BATCH_TRACKS]}
        if renditions:
            body["renditions"] = renditions
        if slices is not None:
            body["slices"] = slices
        summary.add(_post(f"{base}/admin/warm", body, settings.admin.token))
        print(f"{summary.tracks}/{len(track_ids)} tracks", file=sys.stderr)
    return summary


def _post(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - the URL is http(s) from our own config
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise WarmError(f"the admin API at {url} refused the admin token") from None
        raise WarmError(f"the admin API at {url} answered {exc.code}: {_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WarmError(f"cannot reach the admin API at {url}: {reason}") from None


def _message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["message"])
    except (ValueError, KeyError, TypeError):
        return exc.reason
