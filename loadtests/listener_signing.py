"""Signed URLs for load-test listeners, minted with the edge's own code from the edge's own
TOML config (``--sign-config``), so the load test signs exactly as ``encore-edge sign`` does.

Each worker reads the config itself: signing secrets never travel over Locust's
master-worker channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.tools.sign import sign
from origin.settings import Settings, load_settings

TTL_S = 3600  # a URL's lifetime (capped by auth.max_ttl_s); re-signed well before it ends
RENEW_BEFORE_S = 300


@dataclass(frozen=True, slots=True)
class EdgeAccess:
    """What a listener must send to a node: its client-region header's name, and a signer
    when the node requires signed URLs (None when it does not)."""

    region_header: str
    signer: UrlSigner | None


class UrlSigner:
    """Signs paths with the config's newest key (the last in ``auth.signing_keys``: rotations
    add the new key after the old one), remembering each URL until shortly before it expires.
    """

    def __init__(
        self, settings: Settings, region: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        auth = settings.auth
        if not auth.signing_keys:
            raise ValueError("auth.signing_keys is empty: this node does not sign URLs")
        self._settings = settings
        self._kid = list(auth.signing_keys)[-1]
        # With auth.bind_region the signature covers the region the edge will see.
        self._region = (region or settings.edge.region) if auth.bind_region else None
        self._ttl_s = min(TTL_S, int(auth.max_ttl_s))
        self._renew_before_s = min(RENEW_BEFORE_S, self._ttl_s / 2)
        self._clock = clock
        self._signed: dict[str, tuple[str, float]] = {}  # path -> (signed path, expiry)

    def __call__(self, path: str) -> str:
        now = self._clock()
        known = self._signed.get(path)
        if known is not None and known[1] - self._renew_before_s > now:
            return known[0]
        signed = sign(
            self._settings, path, ttl_s=self._ttl_s, kid=self._kid, region=self._region, now=now
        )
        if len(self._signed) > 10_000:
            self._signed.clear()
        self._signed[path] = (signed, now + self._ttl_s)
        return signed


def edge_access(config: str | None, region: str | None) -> EdgeAccess:
    """Read ``config`` (an edge's TOML; env overrides apply as on the edge); without one, the
    default header name and no signing."""
    if not config:
        return EdgeAccess("X-Client-Region", None)
    settings = load_settings(Path(config))
    signer = UrlSigner(settings, region) if settings.auth.signing_keys else None
    return EdgeAccess(settings.edge.client_region_header, signer)
