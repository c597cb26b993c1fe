"""Signed URLs: ``?exp=<unix seconds>&kid=<key id>&sig=<base64url HMAC-SHA256>``.

The signature covers the (percent-decoded) path and ``exp``, one per line, and the client's
region as a third line when ``auth.bind_region`` is on:

    sig = base64url_nopad(HMAC-SHA256(secret[kid], "{path}\\n{exp}" [+ "\\n{region}"]))

Every key in ``auth.signing_keys`` is accepted at once, which is how keys rotate: add the new
key, sign with it, and remove the old one after the longest URL lifetime has passed. A URL is
accepted until ``exp`` plus ``auth.clock_skew_s``, and refused outright if ``exp`` lies more than
``auth.max_ttl_s`` (plus the skew) ahead: a leaked long-lived URL is a long-lived bearer token.
Each refusal has its own code (a 403): ``signature_missing``, ``signature_invalid``,
``signature_expired``, ``signature_unknown_key``, ``signature_lifetime_exceeded``.
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from urllib.parse import parse_qsl, urlencode

from multidict import MultiDict, MultiMapping

from edge.http.errors import Forbidden
from edge.telemetry import metrics
from origin.settings import AuthSettings

QUERY_KEYS = ("exp", "kid", "sig")


def signature(secret: str, path: str, exp: int, region: str | None = None) -> str:
    message = f"{path}\n{exp}" if region is None else f"{path}\n{exp}\n{region}"
    digest = hmac.digest(secret.encode(), message.encode(), "sha256")  # OpenSSL's one-shot
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_query(secret: str, kid: str, path: str, exp: int, region: str | None = None) -> str:
    return urlencode({"exp": exp, "kid": kid, "sig": signature(secret, path, exp, region)})


MAX_REMEMBERED = 16_384  # verified URLs kept; past it the memo starts again
_EXP = re.compile(r"[1-9][0-9]{0,11}")  # unix seconds: no sign, no leading zero, < year 33658


class SignatureCheck:
    """Verifies signed URLs against a set of keys (``auth.signing_keys``)."""

    def __init__(self, auth: AuthSettings) -> None:
        self.update(auth)

    def update(self, auth: AuthSettings) -> None:
        """Take a new ``[auth]`` section (a rotation, see ``edge.access.key_reload``)."""
        # Signed URLs verified before, exactly as sent -> their exp: a player asks for many
        # ranges with one URL, and an HMAC per request is the dearest step of a hit.
        self._verified: dict[tuple[str, str, str], int] = {}
        self.keys = dict(auth.signing_keys)
        self.clock_skew_s = auth.clock_skew_s
        self.max_ttl_s = auth.max_ttl_s
        self.bind_region = auth.bind_region

    @property
    def required(self) -> bool:
        return bool(self.keys)

    @property
    def remembered(self) -> int:
        """How many verified URLs the memo holds (one per URL, however many its requests)."""
        return len(self._verified)

    def verify(
        self, path: str, query: MultiMapping[str], region: str, now: float | None = None
    ) -> None:
        """Return if the query signs ``path`` (for ``region``), else raise Forbidden."""
        problem = self.problem(path, query, region, now)
        if problem is not None:
            code, message = problem
            metrics.SIGNATURE_REJECTIONS.labels(code).inc()
            raise Forbidden(message, code=code)

    def verify_target(
        self, path: str, query_string: str, region: str, now: float | None = None
    ) -> None:
        """:meth:`verify` for a request's path and raw query string, remembering URLs that
        passed (until they expire; the memo is bounded, and emptied by a key change)."""
        key = (path, query_string, region if self.bind_region else "")
        exp = self._verified.get(key)
        if exp is not None and (time.time() if now is None else now) <= exp + self.clock_skew_s:
            return
        query = MultiDict(parse_qsl(query_string, keep_blank_values=True))
        self.verify(path, query, region, now)
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()
        self._verified[key] = int(query["exp"])

    def problem(  # noqa: PLR0911 - one return per refusal code
        self, path: str, query: MultiMapping[str], region: str, now: float | None = None
    ) -> tuple[str, str] | None:
        """Why the query does not sign ``path`` (an error code and a message), or None."""
        values = [query.getall(key, []) for key in QUERY_KEYS]
        if not all(values):
            missing = [key for key, found in zip(QUERY_KEYS, values, strict=True) if not found]
            return "signature_missing", f"this URL must be signed; missing {', '.join(missing)}"
        if any(len(found) > 1 for found in values):
            return "signature_invalid", "exp, kid and sig may each appear only once"
        exp_text, kid, sig = (found[0] for found in values)
        if not _EXP.fullmatch(exp_text):
            return "signature_invalid", "exp must be a unix time in whole seconds"
        exp = int(exp_text)
        secret = self.keys.get(kid)
        if secret is None:
            return "signature_unknown_key", "the URL was signed with a key this edge does not know"
        expected = signature(secret, path, exp, region if self.bind_region else None)
        given = sig.encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected.encode()):
            return "signature_invalid", "the signature does not match this URL"
        # Checked after the signature, so a forged exp cannot learn anything from the answer.
        moment = time.time() if now is None else now
        if moment > exp + self.clock_skew_s:
            return "signature_expired", "the signed URL has expired; ask for a new one"
        if exp - moment > self.max_ttl_s + self.clock_skew_s:
            return (
                "signature_lifetime_exceeded",
                f"the signed URL is valid for longer than this edge allows "
                f"({self.max_ttl_s:g} s); sign it with a shorter lifetime",
            )
        return None
