"""Signed URLs: ``?exp=<unix seconds>&kid=<key id>&sig=<base64url HMAC-SHA256>``.

The signature covers the (percent-decoded) path and ``exp``, one per line, and the client's
region as a third line when ``auth.bind_region`` is on:

    sig = base64url_nopad(HMAC-SHA256(secret[kid], "{path}\\n{exp}" [+ "\\n{region}"]))

Every key in ``auth.signing_keys`` is accepted at once, which is how keys rotate: add the new
key, sign with it, and remove the old one after the longest URL lifetime has passed. A URL is
accepted until ``exp`` plus ``auth.clock_skew_s``. Each refusal has its own code (a 403):
``signature_missing``, ``signature_invalid``, ``signature_expired``, ``signature_unknown_key``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import NoReturn
from urllib.parse import urlencode

from multidict import MultiMapping

from edge import metrics
from edge.errors import Forbidden

QUERY_KEYS = ("exp", "kid", "sig")


def signature(secret: str, path: str, exp: int, region: str | None = None) -> str:
    message = f"{path}\n{exp}" if region is None else f"{path}\n{exp}\n{region}"
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_query(secret: str, kid: str, path: str, exp: int, region: str | None = None) -> str:
    return urlencode({"exp": exp, "kid": kid, "sig": signature(secret, path, exp, region)})


class SignatureCheck:
    """Verifies signed URLs against a set of keys (``auth.signing_keys``)."""

    def __init__(self, keys: Mapping[str, str], *, clock_skew_s: float, bind_region: bool) -> None:
        self.update(keys, clock_skew_s=clock_skew_s, bind_region=bind_region)

    def update(self, keys: Mapping[str, str], *, clock_skew_s: float, bind_region: bool) -> None:
        """Take a new key set (a rotation, see ``edge.key_reload``)."""
        self.keys = dict(keys)
        self.clock_skew_s = clock_skew_s
        self.bind_region = bind_region

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def verify(
        self, path: str, query: MultiMapping[str], region: str, now: float | None = None
    ) -> None:
        """Return if the query signs ``path`` (for ``region``), else raise Forbidden."""
        values = [query.getall(key, []) for key in QUERY_KEYS]
        if not all(values):
            missing = [key for key, found in zip(QUERY_KEYS, values, strict=True) if not found]
            _refuse("signature_missing", f"this URL must be signed; missing {', '.join(missing)}")
        if any(len(found) > 1 for found in values):
            _refuse("signature_invalid", "exp, kid and sig may each appear only once")
        exp_text, kid, sig = (found[0] for found in values)
        if not (exp_text.isascii() and exp_text.isdigit() and len(exp_text) <= 13):
            _refuse("signature_invalid", "exp must be a unix time in whole seconds")
        exp = int(exp_text)
        secret = self.keys.get(kid)
        if secret is None:
            _refuse(
                "signature_unknown_key", "the URL was signed with a key this edge does not know"
            )
        expected = signature(secret, path, exp, region if self.bind_region else None)
        given = sig.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected.encode()):
            _refuse("signature_invalid", "the signature does not match this URL")
        # Checked after the signature, so a forged exp cannot learn anything from the answer.
        if (time.time() if now is None else now) > exp + self.clock_skew_s:
            _refuse("signature_expired", "the signed URL has expired; ask for a new one")


def _refuse(code: str, message: str) -> NoReturn:
    metrics.SIGNATURE_REJECTIONS.labels(code).inc()
    raise Forbidden(message, code=code)
