"""A differential corpus of raw HTTP requests against the edge's public listener.

Each :class:`Case` is one raw request (valid or hostile), sent as is on a fresh connection to
one of two edges: ``open`` (no signing keys) or ``signed`` (``auth.signing_keys``). What the
edge answered when the corpus was recorded is in ``tests/edge/http/corpus.json``;
``tests/edge/http/test_differential.py`` replays every case against the edge the tree runs
now and checks that the answer is the same, after :func:`normalise` (status line, the headers
that matter, the body), except for the cases the HTTP rewrite changed on purpose, marked with
one line of reason each:

- :class:`Change`: a new JSON error answer instead (status, error code, whether closed);
- :class:`Adjusted`: the recorded answer with a few named adjustments (headers set, the
  status line's version, the connection's fate, a JSON error's message not compared, no
  interim ``100``, another case's recorded answer), then compared in full as any other; each
  adjustment must be needed, and must change the recording.

After the response(s) a probe (``GET /healthz`` with ``Connection: close``) is sent on the
same connection: the connection was ``closed`` by the edge if nothing comes back, ``open`` if
the probe alone is answered, and anything else (say a second response to bytes the edge took
for another request) is listed.

Deterministic by construction: fixed track ids and bytes (so ETags are the same), a fixed
publication time (so ``Last-Modified`` is), and a fixed cache state: :func:`start_env` warms
what the cases read as hits, and every case that reads cold or half-cold bytes has a track of
its own. Dates (``Date``) are checked for format only; a multipart boundary is replaced by
``BOUNDARY``.

Record against the code the corpus should describe (it starts its own S3 server, or uses
``ENCORE_TEST_S3_ENDPOINT`` as the suite does)::

    python -m tests.support.http_corpus record [--out PATH] [--label COMMIT]
    python -m tests.support.http_corpus relabel   # marks and notes only, observations kept

To record an older commit from a tree that has moved on, export it and run there, with the
editable install's finder stripped so the tree's own modules do not leak in::

    B=/tmp/corpus-base; mkdir -p $B && git archive COMMIT | tar -x -C $B
    cp tests/support/http_corpus.py $B/tests/support/
    mkdir -p $B/tests/edge/http && touch $B/tests/edge/http/__init__.py
    echo 'import sys; sys.meta_path[:] = [f for f in sys.meta_path
        if "editable" not in getattr(f, "__module__", "").lower()]' > $B/sitecustomize.py
    (cd $B && PYTHONPATH=$B python -m tests.support.http_corpus record --label COMMIT \\
        --out "$OLDPWD/tests/edge/http/corpus.json")

(the recorder prints which ``edge`` package it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import difflib
import hashlib
import hmac
import json
import os
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import edge
from origin.license import License
from origin.local_s3 import LocalS3
from origin.s3 import open_s3_client
from tests.conftest import Catalog, S3Target, make_settings
from tests.support.edge_server import EdgeServer

CORPUS_PATH = Path(__file__).resolve().parents[1] / "edge" / "http" / "corpus.json"
FORMAT = 1

HOST = b"127.0.0.1"
SECRET = "corpus-secret-0123456789abcdef"
KID = "k1"
PUBLISHED_AT = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
LAST_MODIFIED = "Mon, 04 Mar 2024 05:06:07 GMT"
EARLIER = "Sun, 03 Mar 2024 05:06:07 GMT"
LATER = "Tue, 05 Mar 2024 05:06:07 GMT"
MAX_REQUEST_LINE = 4096  # server.max_request_line_bytes (default)
MAX_HEADER_LINE = 8190  # server.max_header_bytes (default)
MAX_HEADERS = 64  # server.max_headers (default)
READ_TIMEOUT_S = 5.0
SILENCE_S = 1.5  # for cases where today's edge does not answer: how long to wait to say so
EXACT_BODY_BYTES = 4096  # bodies up to this size (and not audio) are compared byte for byte

# Headers compared by value (case-insensitive names; every value, in order).
MATTERS = (
    "accept-ranges",
    "access-control-allow-headers",
    "access-control-allow-methods",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-max-age",
    "allow",
    "cache-control",
    "connection",
    "content-length",
    "content-range",
    "content-type",
    "etag",
    "last-modified",
    "retry-after",
    "server",
    "transfer-encoding",
    "x-cache",
    "x-cache-tier",
)
_IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT"
)
PROBE = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


# --- the catalogue -------------------------------------------------------------------------


def audio(seed: str, size: int) -> bytes:
    """Deterministic stand-in audio bytes."""
    return hashlib.shake_256(seed.encode()).digest(size)


@dataclass(frozen=True)
class Track:
    track_id: str
    renditions: dict[str, int]  # name: size
    allow: tuple[str, ...] = ("*",)

    def data(self, rendition: str) -> bytes:
        return audio(f"{self.track_id}/{rendition}", self.renditions[rendition])

    def etag(self, rendition: str) -> str:
        return '"' + hashlib.sha256(self.data(rendition)).hexdigest() + '"'


A = Track("corpus-a", {"160": 50_000, "96": 20_000})  # warmed on both nodes: memory hits
COLD = Track("corpus-cold", {"160": 40_000})  # read once, by one case: a miss
PARTIAL = Track("corpus-partial", {"160": 40_000})  # slice 0 warmed: a whole GET is partial
SE_ONLY = Track("corpus-se", {"160": 30_000}, allow=("SE",))
NO_ONLY = Track("corpus-no", {"160": 10_000}, allow=("NO",))
EMPTY = Track("corpus-empty", {"160": 0})
TRACKS = (A, COLD, PARTIAL, SE_ONLY, NO_ONLY, EMPTY)

A_PATH = "/v1/tracks/corpus-a"
A160 = A_PATH + "/160"
A160_ETAG = A.etag("160")
# The manifest view's ETag (the edge's hash of the body it renders): recorded, then pinned.
A_MANIFEST_ETAG = '"7267a2ae81e18abf561b7e029dbb425c"'


# --- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A case whose answer the HTTP rewrite changes on purpose: the new answer."""

    reason: str
    status: int
    error: str | None  # the JSON body's "error" code (None: a HEAD answer, which has no body)
    closed: bool | None = True  # None: either

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# What the adjustments set: the CORS headers every public response carries, and the close.
CORS = (
    ("access-control-allow-origin", "*"),
    (
        "access-control-expose-headers",
        "Content-Range, Content-Length, Accept-Ranges, ETag, X-Cache, X-Cache-Tier",
    ),
)
CLOSE = (("connection", "close"),)
NOT_COMPARED = "(not compared)"


@dataclass(frozen=True)
class Adjusted:
    """A case whose answer the HTTP rewrite changes on purpose in a few named ways: the
    recorded answer, so adjusted, is the expected one, compared in full like any other.

    Applied in this order: ``like`` (the recorded answer of that unmarked case instead),
    ``no_interim_100`` (the recorded ``100 Continue`` is not sent), ``version`` (every status
    line's version), ``headers`` (set, by name, on every final response), ``connection`` (the
    connection's fate), ``messages`` (a JSON error's human message, and so Content-Length, not
    compared: on both sides, the code still is). Each must be needed: see :func:`check_adjusted`.
    """

    reason: str
    like: str | None = None
    no_interim_100: bool = False
    version: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    connection: str | None = None
    messages: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "like": self.like,
            "no_interim_100": self.no_interim_100,
            "version": self.version,
            "headers": dict(self.headers),
            "connection": self.connection,
            "messages": self.messages,
        }

    def parts(self) -> list[Part]:
        """Each adjustment, as a :class:`Part`."""
        bare = Adjusted(self.reason)
        on_like = Adjusted(self.reason, like=self.like)  # what the other parts adjust
        out: list[Part] = []

        def add(label: str, **fields: Any) -> None:
            unset = {name: getattr(bare, name) for name in fields}
            base = bare if "like" in fields else on_like
            without = dataclasses.replace(self, **unset)
            out.append(Part(label, without, dataclasses.replace(base, **fields), base))

        if self.like is not None:
            add(f"like {self.like}", like=self.like)
        if self.no_interim_100:
            add("no interim 100", no_interim_100=True)
        if self.version is not None:
            add(f"version {self.version}", version=self.version)
        for pair in self.headers:
            rest = tuple(p for p in self.headers if p != pair)
            without = dataclasses.replace(self, headers=rest)
            alone = dataclasses.replace(on_like, headers=(pair,))
            out.append(Part(f"header {pair[0]}: {pair[1]}", without, alone, on_like))
        if self.connection is not None:
            add(f"connection {self.connection}", connection=self.connection)
        if self.messages:
            add("messages not compared", messages=True)
        return out

    def apply(self, recorded: dict[str, Any], recordings: dict[str, dict[str, Any]]) -> Any:
        """The recorded (normalised) answer, adjusted: the answer expected now. ``recordings``
        (every case's recorded answer, by name) is for ``like``."""
        base = recordings[self.like] if self.like is not None else recorded
        answer: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy
        responses = answer["responses"]
        if self.no_interim_100:
            responses[:] = [r for r in responses if not _is_status(r, "100")]
        for response in responses:
            if self.version is not None:
                _, _, rest = response["status_line"].partition(" ")
                response["status_line"] = f"{self.version} {rest}"
            if self.headers and not _is_status(response, "1"):
                headers = response.setdefault("headers", {})
                for name, value in self.headers:
                    headers[name] = [value]
        if self.connection is not None:
            answer["connection"] = self.connection
        return self.mask(answer)

    def mask(self, answer: dict[str, Any]) -> Any:
        """``answer`` with what this mark does not compare masked (on either side)."""
        if not self.messages:
            return answer
        answer = json.loads(json.dumps(answer))
        for response in answer["responses"]:
            exact = response.get("body", {}).get("exact")
            try:
                doc = json.loads(exact) if exact else None
            except ValueError:
                continue
            if not isinstance(doc, dict) or set(doc) != {"error", "message"}:
                continue
            response["body"] = {"json_error": doc["error"], "message": NOT_COMPARED}
            if "content-length" in response.get("headers", {}):
                response["headers"]["content-length"] = [NOT_COMPARED]
        return answer


@dataclass(frozen=True)
class Part:
    """One adjustment of an :class:`Adjusted` mark: ``without`` is the mark without it;
    ``alone`` is it on ``base`` (the bare mark, or with the mark's ``like`` if it has one)."""

    label: str
    without: Adjusted
    alone: Adjusted
    base: Adjusted


def _is_status(response: dict[str, Any], prefix: str) -> bool:
    parts = response["status_line"].split(" ")
    return len(parts) > 1 and parts[1].startswith(prefix)


@dataclass(frozen=True)
class Case:
    name: str
    request: bytes  # may hold templates: {EXP}, {SIGNED:/path}, {SIGNED_FAR:/path}
    node: str = "open"  # "open" or "signed"
    methods: tuple[str, ...] = ()  # the requests answered, in order (HEAD: no body)
    compare: str = "full"  # or "status_type": status line and Content-Type only
    timeout_s: float = READ_TIMEOUT_S  # per read
    changed: Change | None = None
    adjusted: Adjusted | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.changed is not None and self.adjusted is not None:
            raise ValueError(f"{self.name}: marked both changed and adjusted")

    @property
    def expected_methods(self) -> tuple[str, ...]:
        if self.methods:
            return self.methods
        return ("HEAD",) if self.request.startswith(b"HEAD ") else ("GET",)

    def identity(self) -> dict[str, Any]:
        """What the corpus entry must agree with (else: re-record)."""
        return {
            "name": self.name,
            "node": self.node,
            "request": self.request.decode("latin-1"),
            "methods": list(self.expected_methods),
            "compare": self.compare,
            "timeout_s": self.timeout_s,
        }

    def marks(self) -> dict[str, Any]:
        return {
            "changed": self.changed.as_json() if self.changed else None,
            "adjusted": self.adjusted.as_json() if self.adjusted else None,
            "note": self.note,
        }


def req(
    target: bytes | str,
    *headers: bytes | str,
    method: bytes | str = b"GET",
    version: bytes | str = b"HTTP/1.1",
    body: bytes = b"",
    host: bool = True,
    eol: bytes = b"\r\n",
) -> bytes:
    """A request head (and body), byte for byte: nothing is cleaned up."""

    def b(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode("latin-1")

    lines = [b(method) + b" " + b(target) + (b" " + b(version) if version else b"")]
    if host:
        lines.append(b"Host: " + HOST)
    lines += [b(header) for header in headers]
    return eol.join(lines) + eol + eol + body


def sign(path: str, exp: int, secret: str = SECRET) -> str:
    """The documented signed-URL query: base64url_nopad(HMAC-SHA256(secret, "path\\nexp"))."""
    digest = hmac.new(secret.encode(), f"{path}\n{exp}".encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"exp={exp}&kid={KID}&sig={sig}"


_TEMPLATE = re.compile(rb"\{(EXP|SIGNED|SIGNED_FAR)(?::([^}]*))?\}")


def resolve(request: bytes, now: float | None = None) -> bytes:
    """Fill a request's templates with signatures valid now (``SIGNED``: exp 1 h ahead;
    ``SIGNED_FAR``: 30 days, past ``auth.max_ttl_s``)."""
    now_s = int(time.time() if now is None else now)

    def fill(match: re.Match[bytes]) -> bytes:
        kind, path = match.group(1), (match.group(2) or b"").decode()
        if kind == b"EXP":
            return str(now_s + 3600).encode()
        ttl = 3600 if kind == b"SIGNED" else 30 * 86400
        return sign(path, now_s + ttl).encode()

    return _TEMPLATE.sub(fill, request)


BODY_NOT_ALLOWED = "a request body on GET/HEAD becomes 400 request_body_not_allowed, closed"


def _body_change(*, head: bool = False) -> Change:
    return Change(BODY_NOT_ALLOWED, 400, None if head else "request_body_not_allowed")


TE_NOT_ALLOWED = (
    "Transfer-Encoding of any value on GET/HEAD is a body: 400 request_body_not_allowed, closed"
)
LINE_LIMIT = (
    "server.max_request_line_bytes bounds the whole request line now (method, target, "
    "version), not the target alone: over it, 400 request_too_large, closed"
)
REFUSAL_CORS = "the listener's own refusals carry the CORS headers too, as every response does"
REFUSAL_REWORDED = (
    "the listener's own refusals carry the CORS headers too, and their message is reworded "
    "(the error code is the contract)"
)
ONE_HOST = (
    "HTTP/1.1 without exactly one Host is 400 malformed_request, closed (RFC 9112 3.2), as "
    "before; CORS headers added, message reworded"
)
HTTP10 = (
    "HTTP/1.0 is answered with an HTTP/1.1 status line (RFC 9112 2.5), Connection: close "
    "unless kept alive"
)
BODY_UNREAD = "a body on a method other than GET/HEAD is not read: answered, then closed"
NO_UPGRADE = "an Upgrade is answered without a protocol switch, then the connection is closed"
NO_INTERIM = "Expect: 100-continue without a body: no interim 100 Continue (RFC 9110 10.1.1)"
PIPELINED_AFTER_CLOSE = (
    "a request pipelined after Connection: close is not answered: the first gets its normal "
    "answer (a GET of the manifest's), with Connection: close, then the close"
)


def _refusal(*, reworded: bool = False) -> Adjusted:
    """A refusal of the listener's own (no change but the CORS headers, and the message)."""
    reason = REFUSAL_REWORDED if reworded else REFUSAL_CORS
    return Adjusted(reason, headers=CORS, messages=reworded)


def _closed(reason: str) -> Adjusted:
    return Adjusted(reason, headers=CLOSE, connection="closed")


def _http10(*, keep_alive: bool = False) -> Adjusted:
    return Adjusted(HTTP10, version="HTTP/1.1", headers=() if keep_alive else CLOSE)


def _valid_cases() -> list[Case]:
    a96 = A_PATH + "/96"
    multi = "Range: bytes=0-9,100-199,49990-"
    return [
        Case("manifest_get", req(A_PATH)),
        Case("manifest_head", req(A_PATH, method="HEAD")),
        Case("manifest_if_none_match", req(A_PATH, f"If-None-Match: {A_MANIFEST_ETAG}")),
        Case("manifest_if_none_match_other", req(A_PATH, 'If-None-Match: "other"')),
        Case("manifest_if_modified_since", req(A_PATH, f"If-Modified-Since: {LAST_MODIFIED}")),
        Case("manifest_if_modified_since_earlier", req(A_PATH, f"If-Modified-Since: {EARLIER}")),
        Case("manifest_if_match_other", req(A_PATH, 'If-Match: "other"')),
        Case("rendition_get", req(A160)),
        Case("rendition_get_96", req(a96)),
        Case("rendition_head", req(A160, method="HEAD")),
        Case("rendition_head_range", req(A160, "Range: bytes=0-99", method="HEAD")),
        Case("rendition_head_multi_range", req(A160, multi, method="HEAD")),
        Case("range_single", req(A160, "Range: bytes=0-99")),
        Case("range_across_slices", req(A160, "Range: bytes=16000-17000")),
        Case("range_open_ended", req(A160, "Range: bytes=49000-")),
        Case("range_suffix", req(A160, "Range: bytes=-500")),
        Case("range_suffix_longer_than_object", req(A160, "Range: bytes=-99999")),
        Case("range_end_past_object", req(A160, "Range: bytes=49990-99999")),
        Case("range_multi", req(A160, multi)),
        Case("range_multi_coalesced", req(A160, "Range: bytes=0-99,50-149")),
        Case("range_multi_one_satisfiable", req(A160, "Range: bytes=0-9,60000-60009")),
        Case("range_unsatisfiable", req(A160, "Range: bytes=50000-")),
        Case("range_malformed", req(A160, "Range: bytes=abc")),
        Case("range_reversed", req(A160, "Range: bytes=5-1")),
        Case("range_empty_list", req(A160, "Range: bytes=")),
        Case("range_other_unit", req(A160, "Range: items=0-1")),
        Case(
            "range_17_parts",
            req(A160, "Range: bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17))),
        ),
        Case("range_whitespace", req(A160, "Range: bytes = 0-1 , 5-6")),
        Case("range_lowercase_header_name", req(A160, "range: bytes=0-1")),
        Case("rendition_if_none_match", req(A160, f"If-None-Match: {A160_ETAG}")),
        Case("rendition_if_none_match_weak", req(A160, f"If-None-Match: W/{A160_ETAG}")),
        Case("rendition_if_none_match_star", req(A160, "If-None-Match: *")),
        Case("rendition_if_none_match_list", req(A160, f'If-None-Match: "x", {A160_ETAG}')),
        Case("rendition_if_match", req(A160, f"If-Match: {A160_ETAG}", "Range: bytes=0-1")),
        Case("rendition_if_match_other", req(A160, 'If-Match: "other"')),
        Case("rendition_if_unmodified_since_earlier", req(A160, f"If-Unmodified-Since: {EARLIER}")),
        Case("rendition_if_modified_since", req(A160, f"If-Modified-Since: {LAST_MODIFIED}")),
        Case("rendition_if_modified_since_later", req(A160, f"If-Modified-Since: {LATER}")),
        Case(
            "rendition_if_modified_since_earlier",
            req(A160, f"If-Modified-Since: {EARLIER}", "Range: bytes=0-1"),
        ),
        Case("if_range_etag_match", req(A160, f"If-Range: {A160_ETAG}", "Range: bytes=0-99")),
        Case("if_range_etag_other", req(A160, 'If-Range: "other"', "Range: bytes=0-99")),
        Case("if_range_weak_etag", req(A160, f"If-Range: W/{A160_ETAG}", "Range: bytes=0-99")),
        Case("if_range_date_match", req(A160, f"If-Range: {LAST_MODIFIED}", "Range: bytes=0-99")),
        Case("if_range_date_other", req(A160, f"If-Range: {LATER}", "Range: bytes=0-99")),
        Case("if_range_bad_date", req(A160, "If-Range: not a date", "Range: bytes=0-99")),
        Case(
            "options_preflight_rendition",
            req(
                A160,
                "Origin: https://player.example",
                "Access-Control-Request-Method: GET",
                "Access-Control-Request-Headers: range, if-range",
                method="OPTIONS",
            ),
        ),
        Case("options_manifest", req(A_PATH, method="OPTIONS")),
        Case("options_invalid_track", req("/v1/tracks/bad!id", method="OPTIONS")),
        Case("cors_simple_get", req(A160, "Origin: https://player.example", "Range: bytes=0-1")),
        Case("http10_get", req(A160, "Range: bytes=0-9", version="HTTP/1.0"), adjusted=_http10()),
        Case("http10_no_host", req(A_PATH, version="HTTP/1.0", host=False), adjusted=_http10()),
        Case(
            "http10_keep_alive",
            req(A_PATH, "Connection: keep-alive", version="HTTP/1.0"),
            adjusted=_http10(keep_alive=True),
        ),
        Case("connection_close", req(A160, "Connection: close", "Range: bytes=0-9")),
        Case("connection_close_mixed_case", req(A_PATH, "connection: CLOSE")),
        Case("absolute_form", req(b"http://127.0.0.1" + A160.encode(), "Range: bytes=0-9")),
        Case("absolute_form_other_host", req(b"http://elsewhere.example:8080" + A_PATH.encode())),
        Case(
            "no_host_http11",
            req(A_PATH, host=False),
            adjusted=Adjusted(ONE_HOST, headers=CORS, messages=True),
        ),
        Case(
            "two_hosts",
            req(A_PATH, "Host: elsewhere.example"),
            adjusted=Adjusted(ONE_HOST, headers=CORS, messages=True),
        ),
        Case(
            "pipelined_two",
            req(A_PATH) + req(A160, "Range: bytes=10-19"),
            methods=("GET", "GET"),
        ),
        Case(
            "pipelined_head_then_get",
            req(A160, method="HEAD") + req("/healthz"),
            methods=("HEAD", "GET"),
        ),
        Case(
            "pipelined_first_closes",
            req(A_PATH, "Connection: close") + req("/healthz"),
            methods=("GET",),
            adjusted=Adjusted(
                PIPELINED_AFTER_CLOSE, like="manifest_get", headers=CLOSE, connection="closed"
            ),
        ),
        Case("query_string_unsigned", req(A160 + "?foo=bar&exp=1", "Range: bytes=0-9")),
        Case(
            "expect_100_continue_no_body",
            req(A_PATH, "Expect: 100-continue"),
            adjusted=Adjusted(NO_INTERIM, no_interim_100=True),
        ),
        Case("get_content_length_zero", req(A_PATH, "Content-Length: 0")),
        Case("leading_empty_line", b"\r\n" + req("/healthz")),
        Case("healthz", req("/healthz")),
        Case("healthz_head", req("/healthz", method="HEAD")),
        Case("readyz", req("/readyz"), compare="status_type"),
        Case("metrics", req("/metrics"), compare="status_type"),
        Case("root", req("/")),
        Case("unknown_path", req("/nope")),
        Case("v1_tracks_no_id", req("/v1/tracks/")),
        Case("trailing_slash", req(A_PATH + "/")),
        Case("too_deep", req(A160 + "/extra")),
        Case("unknown_track", req("/v1/tracks/corpus-missing")),
        Case("unknown_track_rendition", req("/v1/tracks/corpus-missing/160")),
        Case("invalid_track_id", req("/v1/tracks/bad!id")),
        Case("invalid_track_id_leading_dash", req("/v1/tracks/-abc")),
        Case("invalid_track_id_too_long", req("/v1/tracks/" + "a" * 129)),
        Case("invalid_rendition", req(A_PATH + "/bad.name")),
        Case("unknown_rendition", req(A_PATH + "/999")),
        Case("licence_451_region_header", req("/v1/tracks/corpus-se/160", "X-Client-Region: NO")),
        Case("licence_451_default_region", req("/v1/tracks/corpus-no")),
        Case("licence_451_head", req("/v1/tracks/corpus-no/160", method="HEAD")),
        Case("licence_ok_private_cold", req("/v1/tracks/corpus-se/160", "X-Client-Region: se")),
        Case("client_region_invalid", req(A_PATH, "X-Client-Region: XYZ")),
        Case(
            "client_region_twice",
            req(A_PATH, "X-Client-Region: SE", "X-Client-Region: NO"),
        ),
        Case("cold_miss", req("/v1/tracks/corpus-cold/160")),
        Case("partial_hit", req("/v1/tracks/corpus-partial/160")),
        Case("empty_rendition", req("/v1/tracks/corpus-empty/160")),
        Case("empty_rendition_range", req("/v1/tracks/corpus-empty/160", "Range: bytes=0-")),
        Case("post_track", req(A_PATH, "Content-Length: 0", method="POST")),
        Case("put_rendition", req(A160, "Content-Length: 0", method="PUT")),
        Case("delete_track", req(A_PATH, method="DELETE")),
        Case("patch_rendition", req(A160, method="PATCH")),
        Case("unknown_method_token", req(A_PATH, method="FOO"), adjusted=_refusal()),
        Case("post_healthz", req("/healthz", "Content-Length: 0", method="POST")),
        Case(
            "post_track_with_body",
            req(A_PATH, "Content-Length: 5", method="POST", body=b"hello"),
            adjusted=_closed(BODY_UNREAD),
        ),
        Case(
            "post_track_body_over_limit",
            req(A_PATH, "Content-Length: 5000", method="POST", body=b"x" * 5000),
            adjusted=_closed(BODY_UNREAD),
        ),
        Case("asterisk_form_options", req("*", method="OPTIONS")),
        Case(
            "connect_authority_form",
            req("127.0.0.1:80", method="CONNECT"),
            adjusted=_closed(BODY_UNREAD),
        ),
    ]


def _hostile_cases() -> list[Case]:
    line_pad = MAX_REQUEST_LINE - len(f"GET {A_PATH}?p= HTTP/1.1")
    target_pad = MAX_REQUEST_LINE - len(f"{A_PATH}?p=")
    header_pad = MAX_HEADER_LINE - len("X-Pad: ")
    return [
        Case(
            "duplicate_content_length",
            req(A_PATH, "Content-Length: 5", "Content-Length: 5", body=b"hello"),
            adjusted=_refusal(),
        ),
        Case(
            "conflicting_content_length",
            req(A_PATH, "Content-Length: 5", "Content-Length: 6", body=b"hello!"),
            adjusted=_refusal(),
        ),
        Case(
            "content_length_and_chunked",
            req(
                A_PATH,
                "Content-Length: 5",
                "Transfer-Encoding: chunked",
                body=b"0\r\n\r\n",
            ),
            adjusted=_refusal(),
        ),
        Case("content_length_negative", req(A_PATH, "Content-Length: -1"), adjusted=_refusal()),
        Case(
            "content_length_not_a_number", req(A_PATH, "Content-Length: abc"), adjusted=_refusal()
        ),
        Case(
            "content_length_plus_sign",
            req(A_PATH, "Content-Length: +5", body=b"hello"),
            adjusted=_refusal(),
        ),
        Case(
            "get_with_body",
            req(A_PATH, "Content-Length: 5", body=b"hello"),
            changed=_body_change(),
        ),
        Case(
            "get_rendition_with_body",
            req(A160, "Content-Length: 5", "Range: bytes=0-9", body=b"hello"),
            changed=_body_change(),
        ),
        Case(
            "get_chunked",
            req(A_PATH, "Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n"),
            changed=_body_change(),
        ),
        Case(
            "get_chunked_empty",
            req(A_PATH, "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
            changed=_body_change(),
        ),
        Case(
            "get_chunked_bad_size",
            req(A_PATH, "Transfer-Encoding: chunked", body=b"zz\r\nhello\r\n0\r\n\r\n"),
            changed=Change(TE_NOT_ALLOWED, 400, "request_body_not_allowed"),
        ),
        Case(
            "get_transfer_encoding_gzip",
            req(A_PATH, "Transfer-Encoding: gzip"),
            changed=Change(TE_NOT_ALLOWED, 400, "request_body_not_allowed"),
        ),
        Case(
            "head_with_body",
            req(A_PATH, "Content-Length: 5", method="HEAD", body=b"hello"),
            changed=_body_change(head=True),
        ),
        Case(
            "head_chunked",
            req(A160, "Transfer-Encoding: chunked", method="HEAD", body=b"0\r\n\r\n"),
            changed=_body_change(head=True),
        ),
        Case(
            "expect_100_continue_with_body",
            req(A_PATH, "Expect: 100-continue", "Content-Length: 5", body=b"hello"),
            changed=_body_change(),
        ),
        Case("obs_fold", req(A_PATH, "X-Folded: a", " continued"), adjusted=_refusal()),
        Case("obs_fold_tab", req(A_PATH, "X-Folded: a", "\tcontinued"), adjusted=_refusal()),
        Case("space_before_colon", req(A_PATH, "X-Test : 1"), adjusted=_refusal()),
        Case(
            "space_before_colon_host",
            req(A_PATH, "Host : 127.0.0.1", host=False),
            adjusted=_refusal(),
        ),
        Case("header_without_colon", req(A_PATH, "X-No-Colon"), adjusted=_refusal()),
        Case("header_empty_name", req(A_PATH, ": value"), adjusted=_refusal()),
        Case("header_name_bad_char", req(A_PATH, "X(Y): 1"), adjusted=_refusal()),
        Case("bare_lf", req(A_PATH, "Range: bytes=0-1", eol=b"\n"), adjusted=_refusal()),
        Case("bare_cr", req(A_PATH, eol=b"\r"), adjusted=_refusal(reworded=True)),
        Case("nul_in_header_value", req(A_PATH, b"X-Test: a\x00b"), adjusted=_refusal()),
        Case("ctl_in_header_value", req(A_PATH, b"X-Test: a\x01b"), adjusted=_refusal()),
        Case("del_in_header_value", req(A_PATH, b"X-Test: a\x7fb"), adjusted=_refusal()),
        Case("cr_in_header_value", req(A_PATH, b"X-Test: a\rb"), adjusted=_refusal()),
        Case("obs_text_in_header_value", req(A_PATH, b"X-Test: caf\xe9")),
        Case("nul_in_header_name", req(A_PATH, b"X-Te\x00st: 1"), adjusted=_refusal()),
        Case("http2_request_line", req(A_PATH, version="HTTP/2.0")),
        Case("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", adjusted=_refusal()),
        Case("http12_request_line", req(A_PATH, version="HTTP/1.2"), adjusted=_refusal()),
        Case(
            "http09_request_line",
            b"GET " + A_PATH.encode() + b"\r\n",
            timeout_s=SILENCE_S,
            changed=Change(
                "HTTP/0.9 (no version) is refused with 400 at once, closed; today: no answer",
                400,
                "malformed_request",
            ),
        ),
        Case("http09_with_headers", b"GET " + A_PATH.encode() + b"\r\nHost: x\r\n\r\n"),
        Case("http30_request_line", req(A_PATH, version="HTTP/3.0"), adjusted=_refusal()),
        Case("http10_unknown_path", req("/nope", version="HTTP/1.0"), adjusted=_http10()),
        Case(
            "http10_malformed_header",
            req(A_PATH, "X-Test : 1", version="HTTP/1.0"),
            adjusted=_refusal(),
        ),
        Case(
            "http10_get_with_body",
            req(A_PATH, "Content-Length: 5", version="HTTP/1.0", body=b"hello"),
            changed=_body_change(),
        ),
        Case("version_garbage", req(A_PATH, version="HTTP/x.y"), adjusted=_refusal()),
        Case("version_lowercase", req(A_PATH, version="http/1.1"), adjusted=_refusal()),
        Case("request_line_at_limit", req(f"{A_PATH}?p={'a' * line_pad}")),
        Case(
            "request_line_over_limit",
            req(f"{A_PATH}?p={'a' * (line_pad + 1)}"),
            changed=Change(LINE_LIMIT, 400, "request_too_large"),
        ),
        Case(
            "request_target_at_limit",
            req(f"{A_PATH}?p={'a' * target_pad}"),
            changed=Change(LINE_LIMIT, 400, "request_too_large"),
        ),
        Case(
            "request_target_over_limit",
            req(f"{A_PATH}?p={'a' * (target_pad + 1)}"),
            adjusted=_refusal(reworded=True),
        ),
        Case(
            "request_line_far_over_limit",
            req(f"{A_PATH}?p={'a' * 20_000}"),
            adjusted=_refusal(reworded=True),
        ),
        Case("header_line_at_limit", req(A_PATH, "X-Pad: " + "a" * header_pad)),
        Case("header_line_over_limit", req(A_PATH, "X-Pad: " + "a" * (header_pad + 1))),
        Case(
            "header_line_far_over_limit",
            req(A_PATH, "X-Pad: " + "a" * 20_000),
            adjusted=_refusal(reworded=True),
        ),
        Case(
            "header_name_over_limit",
            req(A_PATH, "X-" + "n" * MAX_HEADER_LINE + ": 1"),
            adjusted=_refusal(reworded=True),
        ),
        Case(
            "headers_at_limit",
            req(A_PATH, *[f"X-H{i}: {i}" for i in range(MAX_HEADERS - 1)]),
        ),
        Case(
            "headers_over_limit",
            req(A_PATH, *[f"X-H{i}: {i}" for i in range(MAX_HEADERS)]),
            adjusted=_refusal(),
        ),
        Case("invalid_method_token", req(A_PATH, method="GE(T"), adjusted=_refusal()),
        Case("lowercase_method", req(A_PATH, method="get"), adjusted=_refusal()),
        Case("method_with_nul", req(A_PATH, method=b"G\x00T"), adjusted=_refusal()),
        Case(
            "double_space_request_line",
            b"GET  " + A_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        Case(
            "tab_in_request_line",
            b"GET\t" + A_PATH.encode() + b"\tHTTP/1.1\r\nHost: x\r\n\r\n",
            adjusted=_refusal(),
        ),
        Case("space_in_target", req("/v1/tracks/corpus a"), adjusted=_refusal()),
        Case("nul_in_target", req(b"/v1/tracks/corpus\x00a"), adjusted=_refusal(reworded=True)),
        Case("utf8_in_target", req(b"/v1/tracks/caf\xc3\xa9"), adjusted=_refusal(reworded=True)),
        Case("path_percent_00", req("/v1/tracks/corpus%00a")),
        Case("path_percent_00_rendition", req(A_PATH + "/16%000")),
        Case("path_dot_dot", req("/v1/tracks/../healthz")),
        Case("path_dot_dot_track", req("/v1/tracks/corpus-a/../../../healthz")),
        Case("path_percent_dot_dot", req("/v1/tracks/%2e%2e/160")),
        Case("path_percent_slash", req("/v1/tracks/corpus-a%2f160")),
        Case("path_percent_encoded_id", req("/v1/tracks/corpus%2Da")),
        Case("path_bad_percent", req("/v1/tracks/corpus%zz")),
        Case("path_double_slash", req("//v1/tracks/corpus-a")),
        Case("target_with_fragment", req(A_PATH + "#frag")),
        Case("target_not_slash", req("v1/tracks/corpus-a"), adjusted=_refusal(reworded=True)),
        Case("range_overlong_number", req(A160, "Range: bytes=00000000000000000000000001-2")),
        Case("range_overlong_header", req(A160, "Range: bytes=0-0" + ",0-0" * 1500)),
        Case("range_1000_parts", req(A160, "Range: bytes=" + ",".join(["0-0"] * 1000))),
        Case("range_negative_like", req(A160, "Range: bytes=--1")),
        Case("range_twice", req(A160, "Range: bytes=0-1", "Range: bytes=2-3")),
        Case("if_none_match_garbage", req(A160, "If-None-Match: garbage")),
        Case("if_modified_since_garbage", req(A160, "If-Modified-Since: 99999999999999999999")),
        Case("if_modified_since_long", req(A160, "If-Modified-Since: " + "Mon, " * 100)),
        Case("tls_client_hello", bytes.fromhex("160301002a0100002603030000"), adjusted=_refusal()),
        Case("junk", b"\x00\x01\x02garbage\r\n\r\n", adjusted=_refusal()),
        Case("only_crlf", b"\r\n\r\n", timeout_s=SILENCE_S),
        Case(
            "expect_unknown",
            req(A_PATH, "Expect: something-else"),
            changed=Change(
                "a refusal is a JSON error (today: text/plain, echoing the header's value)",
                417,
                "expectation_failed",
                closed=None,
            ),
        ),
        Case(
            "upgrade_websocket",
            req(
                A_PATH,
                "Connection: Upgrade",
                "Upgrade: websocket",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ),
            adjusted=_closed(NO_UPGRADE),
        ),
        Case(
            "upgrade_h2c",
            req(
                A_PATH,
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            ),
            adjusted=_closed(NO_UPGRADE),
        ),
        Case(
            "post_large_content_length_no_body",
            req(A_PATH, "Content-Length: 99999999", method="POST"),
            timeout_s=SILENCE_S,
            adjusted=_closed(BODY_UNREAD),
        ),
        Case("host_with_bad_chars", req(A_PATH, "Host: a b@c", host=False)),
        Case(
            "smuggle_te_obfuscated",
            req(A_PATH, "Transfer-Encoding : chunked", body=b"0\r\n\r\n"),
            adjusted=_refusal(),
        ),
        Case(
            "smuggle_te_chunked_then_identity",
            req(A_PATH, "Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"),
            adjusted=_refusal(),
        ),
    ]


def _signed_cases() -> list[Case]:
    expired = sign(A160, 1_000_000_000)
    return [
        Case("signed_missing", req(A160), node="signed"),
        Case("signed_missing_manifest", req(A_PATH), node="signed"),
        Case("signed_missing_head", req(A160, method="HEAD"), node="signed"),
        Case("signed_invalid", req(A160 + "?exp={EXP}&kid=k1&sig=AAAA"), node="signed"),
        Case("signed_expired", req(A160 + "?" + expired), node="signed"),
        Case("signed_unknown_key", req(A160 + "?exp={EXP}&kid=k9&sig=AAAA"), node="signed"),
        Case("signed_lifetime_exceeded", req(A160 + "?{SIGNED_FAR:" + A160 + "}"), node="signed"),
        Case("signed_exp_leading_zero", req(A160 + "?exp=0{EXP}&kid=k1&sig=AAAA"), node="signed"),
        Case(
            "signed_other_path",
            req(A160 + "?{SIGNED:" + A_PATH + "/96}"),
            node="signed",
        ),
        Case(
            "signed_duplicate_exp",
            req(A160 + "?{SIGNED:" + A160 + "}&exp={EXP}"),
            node="signed",
        ),
        Case(
            "signed_valid_rendition",
            req(A160 + "?{SIGNED:" + A160 + "}", "Range: bytes=0-99"),
            node="signed",
        ),
        Case(
            "signed_valid_whole",
            req(A160 + "?{SIGNED:" + A160 + "}"),
            node="signed",
        ),
        Case("signed_valid_manifest", req(A_PATH + "?{SIGNED:" + A_PATH + "}"), node="signed"),
        Case(
            "signed_valid_head",
            req(A160 + "?{SIGNED:" + A160 + "}", method="HEAD"),
            node="signed",
        ),
        Case(
            "signed_valid_extra_param",
            req(A160 + "?a=1&{SIGNED:" + A160 + "}&z=2", "Range: bytes=0-9"),
            node="signed",
        ),
        Case(
            "signed_valid_451",
            req("/v1/tracks/corpus-no?{SIGNED:/v1/tracks/corpus-no}"),
            node="signed",
        ),
        Case("signed_options_unsigned", req(A160, method="OPTIONS"), node="signed"),
        Case("signed_healthz", req("/healthz"), node="signed"),
        Case("signed_invalid_track_id", req("/v1/tracks/bad!id"), node="signed"),
    ]


CASES: tuple[Case, ...] = (*_valid_cases(), *_hostile_cases(), *_signed_cases())


# --- talking to a node ---------------------------------------------------------------------


@dataclass
class Response:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]  # raw names and values, in order
    body: bytes
    framing: str  # "length", "chunked", "close", "none", or "truncated"

    @property
    def status(self) -> int:
        parts = self.status_line.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def values(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n.lower() == key]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None


class _Stream:
    """A socket read as a byte stream, with a buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False
        self.timed_out = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            self.timed_out = self.eof = True
            return False
        except OSError:  # reset: the edge is gone
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def until(self, delimiter: bytes) -> bytes | None:
        while (at := self.buffer.find(delimiter)) < 0:
            if not self._fill():
                return None
        data = bytes(self.buffer[: at + len(delimiter)])
        del self.buffer[: at + len(delimiter)]
        return data

    def exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _read_response(stream: _Stream, method: str) -> Response | None:
    """One response (1xx included), or None if the stream ends before a byte of it."""
    head = stream.until(b"\r\n\r\n")
    if head is None:
        leftover = stream.rest()
        if not leftover:
            return None
        return Response(leftover.split(b"\r\n", 1)[0], [], leftover, "truncated")
    lines = head[:-4].split(b"\r\n")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    response = Response(lines[0], headers, b"", "none")
    status = response.status
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return response
    if any(v.lower() == "chunked" for v in response.values("transfer-encoding")):
        return _read_chunked(stream, response)
    length = response.header("content-length")
    if length is not None and length.isdigit():
        body = stream.exactly(int(length))
        if body is None:
            response.body, response.framing = stream.rest(), "truncated"
        else:
            response.body, response.framing = body, "length"
        return response
    response.body, response.framing = stream.rest(), "close"
    return response


def _read_chunked(stream: _Stream, response: Response) -> Response:
    body = bytearray()
    while True:
        size_line = stream.until(b"\r\n")
        size = int(size_line.split(b";")[0].strip() or b"0", 16) if size_line else -1
        if size < 0:
            response.framing = "truncated"
            break
        if size == 0:
            stream.until(b"\r\n\r\n") if stream.buffer[:2] != b"\r\n" else stream.exactly(2)
            response.framing = "chunked"
            break
        chunk = stream.exactly(size + 2)
        if chunk is None:
            response.framing = "truncated"
            break
        body += chunk[:-2]
    response.body = bytes(body)
    return response


@dataclass
class Exchange:
    responses: list[Response]
    after: list[Response]  # what came back after the probe
    after_raw: bytes
    timed_out: bool


def exchange(
    port: int, request: bytes, methods: Sequence[str], timeout_s: float = READ_TIMEOUT_S
) -> Exchange:
    """Send ``request`` in one write on a new connection, read a response per method (and
    any interim 1xx), then send the probe and read what follows, to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        stream = _Stream(sock)
        responses: list[Response] = []
        for method in methods:
            while True:
                response = _read_response(stream, method)
                if response is None:
                    break
                responses.append(response)
                if not 100 <= response.status < 200:
                    break
            if response is None or response.framing in ("close", "truncated"):
                break
        timed_out = stream.timed_out
        after: list[Response] = []
        raw_after = b""
        if not stream.eof:
            try:
                sock.sendall(PROBE)
            except OSError:
                stream.eof = True
            pending = bytes(stream.buffer)
            raw_after = pending + stream.rest()
            timed_out = timed_out or stream.timed_out
            replay = _Buffered(raw_after)
            while (response := _read_response(replay, "GET")) is not None:
                after.append(response)
        return Exchange(responses, after, raw_after, timed_out)


class _Buffered(_Stream):
    """Bytes already read, parsed like a stream."""

    def __init__(self, data: bytes) -> None:
        self.buffer = bytearray(data)
        self.eof = True
        self.timed_out = False

    def _fill(self) -> bool:
        return False


# --- normalising ---------------------------------------------------------------------------


def _text(data: bytes) -> str:
    return data.decode("latin-1")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _body(response: Response) -> tuple[dict[str, Any], int]:
    """The body's normal form, and how many bytes shorter it is than the raw one (the
    boundary's doing)."""
    body = response.body
    content_type = response.header("content-type") or ""
    if content_type.lower().startswith("multipart/"):
        boundary = _boundary(content_type)
        if boundary:
            normal = body.replace(b"--" + boundary.encode("latin-1"), b"--BOUNDARY")
            return {"multipart": _parts(normal), "length": len(normal)}, len(body) - len(normal)
    if len(body) <= EXACT_BODY_BYTES and not content_type.lower().startswith("audio/"):
        return {"exact": _text(body)}, 0
    return {"length": len(body), "sha256": _sha(body)}, 0


def _boundary(content_type: str) -> str | None:
    match = re.search(r';\s*boundary="?([^";]+)"?', content_type)
    return match.group(1) if match else None


def _parts(body: bytes) -> dict[str, Any]:
    pieces = body.split(b"--BOUNDARY")
    parts = []
    epilogue = None
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            epilogue = _text(piece)
            break
        head, _, data = piece.partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        parts.append({"head": _text(head), "length": len(data), "sha256": _sha(data)})
    return {"preamble": _text(pieces[0]), "parts": parts, "epilogue": epilogue}


def _date(response: Response) -> str | None:
    values = response.values("date")
    if not values:
        return None
    if len(values) == 1 and _IMF_FIXDATE.fullmatch(values[0]):
        return "IMF-fixdate"
    return "malformed: " + " | ".join(values)


def normal_response(response: Response, compare: str = "full") -> dict[str, Any]:
    if compare == "status_type":
        return {
            "status_line": _text(response.status_line),
            "content-type": response.values("content-type"),
        }
    body, shorter_by = _body(response)
    headers = {name: response.values(name) for name in MATTERS if response.values(name)}
    if shorter_by and "content-length" in headers:
        headers["content-length"] = [str(int(v) - shorter_by) for v in headers["content-length"]]
    if "content-type" in headers:
        headers["content-type"] = [
            re.sub(r"boundary=\S+", "boundary=BOUNDARY", v) for v in headers["content-type"]
        ]
    return {
        "status_line": _text(response.status_line),
        "headers": headers,
        "date": _date(response),
        "framing": response.framing,
        "body": body,
    }


def connection_state(result: Exchange) -> str | list[str]:
    """``closed``: nothing after the probe; ``open``: the probe alone answered; else what came."""
    if result.timed_out:
        return "timeout"
    if not result.after_raw:
        return "closed"
    if len(result.after) == 1 and result.after[0].status == 200:
        return "open"
    return [_text(r.status_line) + " " + _error_code(r) for r in result.after] or [
        "unparsed: " + _text(result.after_raw[:200])
    ]


def _error_code(response: Response) -> str:
    try:
        doc = json.loads(response.body)
    except ValueError:
        return "(not JSON)"
    return str(doc.get("error")) if isinstance(doc, dict) else "(not an object)"


def normalise(case: Case, result: Exchange) -> dict[str, Any]:
    return {
        "responses": [normal_response(r, case.compare) for r in result.responses],
        "connection": connection_state(result),
    }


def check_change(change: Change, observed: dict[str, Any]) -> list[str]:
    """What in ``observed`` (normalised) differs from a changed case's new answer: one final
    response (interim 1xx aside), its status, a JSON body with the error code, and whether
    the connection was then closed."""
    problems = []
    finals = [r for r in observed["responses"] if r["status_line"].split(" ")[1:2] != ["100"]]
    if not finals:
        return ["no response at all"]
    first = finals[0]
    status = first["status_line"].split(" ")[1] if " " in first["status_line"] else "?"
    if status != str(change.status):
        problems.append(f"status {status}, expected {change.status}")
    content_type = first.get("headers", {}).get("content-type", [""])[0]
    if not content_type.startswith("application/json"):
        problems.append(f"Content-Type {content_type!r}, expected JSON")
    if change.error is not None:
        code = None
        exact = first.get("body", {}).get("exact")
        if exact:
            try:
                doc = json.loads(exact)
                code = doc.get("error") if isinstance(doc, dict) else None
            except ValueError:
                code = None
        if code != change.error:
            problems.append(f"error code {code!r}, expected {change.error!r}")
    if change.closed is not None and (observed["connection"] == "closed") != change.closed:
        problems.append(f"connection {observed['connection']!r}, expected closed={change.closed}")
    if len(finals) != 1:
        problems.append(f"{len(finals)} responses, expected 1")
    return problems


def check_adjusted(
    adjusted: Adjusted,
    recorded: dict[str, Any],
    recordings: dict[str, dict[str, Any]],
    observed: dict[str, Any],
) -> list[str]:
    """How ``observed`` differs from an adjusted case's recorded answer, adjusted (a diff);
    else which of the mark's adjustments it matches without (each must be needed)."""
    expected, actual = adjusted.apply(recorded, recordings), adjusted.mask(observed)
    if expected != actual:
        return ["the answer differs from the recording, adjusted:\n" + diff(expected, actual)]
    return [
        f"not needed: {part.label} (the answer matches without it)"
        for part in adjusted.parts()
        if part.without.apply(recorded, recordings) == part.without.mask(observed)
    ]


def adjusted_no_ops(
    adjusted: Adjusted, recorded: dict[str, Any], recordings: dict[str, dict[str, Any]]
) -> list[str]:
    """The adjustments that, alone, leave the recording as it is (so mark nothing)."""
    problems = []
    if adjusted.like is not None and adjusted.like not in recordings:
        problems.append(f"like {adjusted.like}: no such recorded case")
        return problems
    for part in adjusted.parts():
        if part.alone.apply(recorded, recordings) == part.base.apply(recorded, recordings):
            problems.append(f"{part.label}: the recording is so already")
    return problems


def diff(expected: Any, actual: Any) -> str:
    def lines(value: Any) -> list[str]:
        return json.dumps(value, indent=1, sort_keys=True).splitlines()

    return "\n".join(
        difflib.unified_diff(lines(expected), lines(actual), "recorded", "now", lineterm="", n=2)
    )


# --- the environment: a catalogue and two nodes --------------------------------------------


@dataclass
class Env:
    ports: dict[str, int]
    servers: list[EdgeServer] = field(default_factory=list)

    def run(self, case: Case) -> dict[str, Any]:
        result = exchange(
            self.ports[case.node], resolve(case.request), case.expected_methods, case.timeout_s
        )
        return normalise(case, result)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def publish_catalogue(s3: S3Target, workdir: Path) -> None:
    """Publish :data:`TRACKS` through the real publishing code, then pin each manifest's
    publication time (the bucket layout's contract: ``tracks/{id}/manifest.json``)."""
    catalog = Catalog(s3, workdir)
    for track in TRACKS:
        renditions = {name: track.data(name) for name in track.renditions}
        manifest = catalog.publish(renditions, track.track_id, license=License(allow=track.allow))
        pinned = dataclasses.replace(manifest, published_at=PUBLISHED_AT)
        catalog.put_raw(f"tracks/{track.track_id}/manifest.json", pinned.to_json())


def _get(port: int, target: str, *headers: str, method: str = "GET") -> Response:
    result = exchange(port, req(target, *headers, method=method), (method,))
    assert result.responses, f"no answer to {method} {target}"
    return result.responses[-1]


def _warm(port: int, target: str, *headers: str, expect: str) -> None:
    """GET ``target`` (with ``headers``) until a plain HEAD of it says the whole object's
    cache state is ``expect`` (bounded)."""
    for _ in range(50):
        got = _get(port, target, *headers)
        assert got.status in (200, 206), (target, got.status_line, got.body[:200])
        head = _get(port, target, method="HEAD")
        if head.header("x-cache") == expect:
            return
        time.sleep(0.05)
    raise AssertionError(f"{target} did not reach X-Cache {expect}")


def start_env(s3: S3Target, workdir: Path) -> Env:
    """Publish the catalogue, start both nodes, and put their caches in the corpus's state."""
    publish_catalogue(s3, workdir)
    env = Env({})
    sections: dict[str, dict[str, dict[str, Any]]] = {
        "open": {},
        "signed": {"auth": {"signing_keys": {KID: SECRET}}},
    }
    try:
        for name, extra in sections.items():
            server = EdgeServer(make_settings(s3.endpoint_url, s3.bucket, **extra)).start()
            env.servers.append(server)
            env.ports[name] = server.port
        open_port, signed_port = env.ports["open"], env.ports["signed"]
        for rendition in A.renditions:
            _warm(open_port, f"{A_PATH}/{rendition}", expect="HIT")
        _warm(open_port, "/v1/tracks/corpus-partial/160", "Range: bytes=0-99", expect="PARTIAL")
        now = int(time.time())
        signed = f"{A160}?{sign(A160, now + 3600)}"
        _warm(signed_port, signed, expect="HIT")
        # Manifests the cases read, loaded once so no case is the first to fetch one.
        for path in (A_PATH, "/v1/tracks/corpus-se", "/v1/tracks/corpus-no"):
            _get(open_port, path)
        _get(signed_port, f"{A_PATH}?{sign(A_PATH, now + 3600)}")
    except BaseException:
        env.stop()
        raise
    return env


# --- recording -----------------------------------------------------------------------------


def record_cases(env: Env, cases: Sequence[Case] = CASES) -> list[dict[str, Any]]:
    entries = []
    for case in cases:
        observed = env.run(case)
        entry = {**case.identity(), **case.marks(), "observed": observed}
        if case.changed is not None:
            entry["changed_problems_when_recorded"] = check_change(case.changed, observed)
        entries.append(entry)
    return entries


def load_corpus(path: Path = CORPUS_PATH) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_corpus(doc: dict[str, Any], path: Path = CORPUS_PATH) -> None:
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")


def mismatched_identities(doc: dict[str, Any], cases: Sequence[Case] = CASES) -> list[str]:
    """How the corpus and the case list disagree (empty: they agree)."""
    problems = []
    recorded = [entry["name"] for entry in doc["cases"]]
    listed = [case.name for case in cases]
    if len(set(listed)) != len(listed):
        problems.append("duplicate case names in the case list")
    for name in sorted(set(listed) - set(recorded)):
        problems.append(f"{name}: in the case list, not recorded")
    for name in sorted(set(recorded) - set(listed)):
        problems.append(f"{name}: recorded, not in the case list")
    entries = {entry["name"]: entry for entry in doc["cases"]}
    for case in cases:
        entry = entries.get(case.name)
        if entry is None:
            continue
        for key, value in case.identity().items():
            if entry.get(key) != value:
                problems.append(f"{case.name}: {key} differs from the recording")
        for key, value in case.marks().items():
            if entry.get(key) != value:
                problems.append(f"{case.name}: {key} differs (run relabel)")
    return problems


def _record(out: Path, label: str) -> None:
    print(f"recording against {Path(edge.__file__).parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="encore-corpus-") as tmp:
        root = Path(tmp)
        server = None
        endpoint = os.environ.get("ENCORE_TEST_S3_ENDPOINT")
        if endpoint:
            os.environ["AWS_ACCESS_KEY_ID"] = os.environ["ENCORE_TEST_S3_ACCESS_KEY"]
            os.environ["AWS_SECRET_ACCESS_KEY"] = os.environ["ENCORE_TEST_S3_SECRET_KEY"]
        else:
            server = LocalS3(root / "data", log_path=root / "rclone.log")
            server.start()
            os.environ.update(server.credentials_env())
            endpoint = server.endpoint_url
        bucket = f"encore-corpus-{uuid.uuid4().hex[:8]}"

        async def create_bucket() -> None:
            async with open_s3_client(make_settings(endpoint, bucket).origin) as client:
                await client.create_bucket(Bucket=bucket)

        try:
            asyncio.run(create_bucket())
            workdir = root / "catalog"
            workdir.mkdir()
            env = start_env(S3Target(endpoint, bucket, server), workdir)
            try:
                entries = record_cases(env)
            finally:
                env.stop()
        finally:
            if server is not None:
                server.stop()
    doc = {
        "format": FORMAT,
        "recorded_against": label,
        "about": "cases in tests/support/http_corpus.py, replayed by test_differential.py",
        "cases": entries,
    }
    write_corpus(doc, out)
    changed = sum(1 for e in entries if e["changed"])
    adjusted = sum(1 for e in entries if e["adjusted"])
    print(
        f"{len(entries)} cases ({changed} marked changed, {adjusted} adjusted) written to {out}",
        file=sys.stderr,
    )


def _relabel(path: Path) -> None:
    doc = load_corpus(path)
    problems = [p for p in mismatched_identities(doc) if "run relabel" not in p]
    if problems:
        raise SystemExit("cannot relabel, re-record instead:\n  " + "\n  ".join(problems))
    recorded = {entry["name"]: entry for entry in doc["cases"]}
    entries = []
    for case in CASES:  # in the case list's order, each entry's keys in the recorder's
        observed = recorded[case.name]["observed"]
        entry = {**case.identity(), **case.marks(), "observed": observed}
        if case.changed is not None:
            entry["changed_problems_when_recorded"] = check_change(case.changed, observed)
        entries.append(entry)
    doc["cases"] = entries
    write_corpus(doc, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.http_corpus")
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="record every case against the edge here")
    record.add_argument("--out", type=Path, default=CORPUS_PATH)
    record.add_argument("--label", default="unknown", help="what was recorded (a commit)")
    relabel = commands.add_parser("relabel", help="copy marks and notes into the corpus")
    relabel.add_argument("--corpus", type=Path, default=CORPUS_PATH)
    args = parser.parse_args(argv)
    if args.command == "record":
        _record(args.out, args.label)
    else:
        _relabel(args.corpus)


if __name__ == "__main__":
    main()
