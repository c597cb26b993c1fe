"""The manifest as a player sees it: renditions, codecs, bitrates, seek tables, duration.

Bucket keys, content hashes and the licence stay inside the edge. The body is rendered once
per loaded manifest, not per request: with seek tables it runs to tens of kilobytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from origin.manifest import Manifest


def client_view(manifest: Manifest) -> dict[str, Any]:
    renditions = sorted(
        manifest.renditions.values(), key=lambda r: (r.codec, r.bitrate_kbps, r.name)
    )
    return {
        "track_id": manifest.track_id,
        "title": manifest.title,
        "artist": manifest.artist,
        "duration_s": manifest.duration_s,
        "renditions": [
            {
                "name": r.name,
                "url": f"/v1/tracks/{manifest.track_id}/{r.name}",
                "content_type": r.content_type,
                "codec": r.codec,
                "bitrate_kbps": r.bitrate_kbps,
                "measured_kbps": r.measured_kbps,
                "size": r.size,
                "sample_rate": r.sample_rate,
                "channels": r.channels,
                "duration_s": r.duration_s,
                "seek_table": r.seek_table.to_doc(),
            }
            for r in renditions
        ],
    }


@dataclass(frozen=True, slots=True)
class LoadedManifest:
    """A parsed manifest with its client view already rendered."""

    manifest: Manifest
    view_body: bytes
    view_etag: str

    @classmethod
    def of(cls, manifest: Manifest) -> LoadedManifest:
        body = json.dumps(client_view(manifest), separators=(",", ":")).encode()
        return cls(manifest, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    @property
    def footprint(self) -> int:
        return self.manifest.footprint + len(self.view_body)
