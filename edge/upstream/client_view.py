"""The manifest as a player sees it: renditions, codecs, bitrates, seek tables, duration.

Bucket keys, content hashes and the licence stay inside the edge. The body is rendered once
per loaded manifest, not per request: with seek tables it runs to tens of kilobytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edge.http.preconditions import http_date
from edge.http.response import header_block
from origin.license import ANY_REGION, License
from origin.manifest import Manifest, Rendition

# Audio never changes, but who may have it does: only bytes that anyone may fetch anywhere,
# unsigned, may sit in a shared cache (one in front of several regions would skip the licence).
PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"


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


def open_to_all(licence: License | None) -> bool:
    return (
        licence is not None
        and ANY_REGION in licence.allow
        and not licence.deny
        and licence.not_before is None
        and licence.not_after is None
    )


@dataclass(frozen=True, slots=True)
class RenditionHead:
    """What every response with a rendition's bytes says about it, rendered once."""

    rendition: Rendition
    etag: str
    # Accept-Ranges, ETag, Last-Modified, Cache-Control, as header lines: for unsigned
    # requests, and for signed ones (never shared: the signature is the client's).
    unsigned_block: bytes
    signed_block: bytes
    content_type_line: bytes

    @classmethod
    def of(cls, manifest: Manifest, rendition: Rendition) -> RenditionHead:
        def block(cache_control: str) -> bytes:
            return header_block(
                {
                    "Accept-Ranges": "bytes",
                    "ETag": rendition.etag,
                    "Last-Modified": http_date(manifest.published_at),
                    "Cache-Control": cache_control,
                }
            )

        shared = open_to_all(manifest.license)
        return cls(
            rendition,
            rendition.etag,
            block(PUBLIC_IMMUTABLE if shared else PRIVATE_IMMUTABLE),
            block(PRIVATE_IMMUTABLE),
            header_block({"Content-Type": rendition.content_type}),
        )


@dataclass(frozen=True, slots=True)
class LoadedManifest:
    """A parsed manifest with its client view and its renditions' heads already rendered."""

    manifest: Manifest
    view_body: bytes
    view_etag: str
    heads: dict[str, RenditionHead]
    # The licence decision per client region, until the next edge of the licence's window
    # (see edge.access.licensing.LicenceGate.enforce_loaded).
    decisions: dict[str, tuple[str | None, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Manifest) -> LoadedManifest:
        body = json.dumps(client_view(manifest), separators=(",", ":")).encode()
        heads = {name: RenditionHead.of(manifest, r) for name, r in manifest.renditions.items()}
        return cls(manifest, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', heads)

    @property
    def footprint(self) -> int:
        return self.manifest.footprint + len(self.view_body)
