"""``encore-edge sign``: mint a signed URL path for a node's keys, for tests and integration.

The player-facing service that hands out URLs should sign them itself with the same scheme
(see ``edge.access.signing``); this command is the reference and the operator's tool.
"""

from __future__ import annotations

import re
import time

from edge.access.signing import signed_query
from origin.layout import RENDITION_PATTERN, TRACK_ID_PATTERN
from origin.manifest_schema import is_region
from origin.settings import Settings

_TRACK_PATH = re.compile(rf"/v1/tracks/{TRACK_ID_PATTERN}(/{RENDITION_PATTERN})?")


class SignError(Exception):
    """A bad argument, phrased as one line."""


def sign(
    settings: Settings,
    path: str,
    *,
    ttl_s: int,
    kid: str | None,
    region: str | None,
    now: float | None = None,
) -> str:
    """``path`` with the signed query that makes it valid for ``ttl_s`` seconds."""
    auth = settings.auth
    if not auth.signing_keys:
        raise SignError("auth.signing_keys is empty: this node does not require signed URLs")
    if not _TRACK_PATH.fullmatch(path):
        raise SignError(
            f"{path!r} is not a track path such as /v1/tracks/ID or /v1/tracks/ID/160 "
            "(no query, no host)"
        )
    longest = int(auth.max_ttl_s)  # the node refuses longer-lived URLs
    if not 1 <= ttl_s <= longest:
        raise SignError(f"--ttl must be 1 to {longest} seconds (auth.max_ttl_s), got {ttl_s}")
    if kid is None:
        if len(auth.signing_keys) > 1:
            raise SignError(f"several keys: choose one with --kid ({', '.join(auth.signing_keys)})")
        kid = next(iter(auth.signing_keys))
    secret = auth.signing_keys.get(kid)
    if secret is None:
        raise SignError(f"no key {kid!r} in auth.signing_keys ({', '.join(auth.signing_keys)})")
    if auth.bind_region:
        if region is None:
            raise SignError("auth.bind_region is on: give the client's region with --region")
        if not is_region(region):
            raise SignError(f"--region {region!r} is not an ISO 3166-1 alpha-2 code such as SE")
    elif region is not None:
        raise SignError("--region is only for auth.bind_region = true")
    exp = int(time.time() if now is None else now) + ttl_s
    return f"{path}?{signed_query(secret, kid, path, exp, region)}"
