"""The edge's view of the origin bucket: bounded reads and verified range streams.

Every failure leaves here as an :mod:`edge.http.errors` error, so handlers never see botocore.
Their messages reach clients, so they never name a bucket key: the key goes to the log, once
per failed origin request (a missing object at DEBUG: an unknown track id is a client's doing).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from botocore import exceptions as boto

from edge.http.errors import BadOriginData, EncoreError, NotFound, OriginTimeout, OriginUnavailable
from edge.telemetry import metrics
from origin.s3 import http_status

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_TIMEOUTS = (boto.ConnectTimeoutError, boto.ReadTimeoutError, asyncio.TimeoutError)
# The connection closed before the announced Content-Length arrived.
_CUT_SHORT = (aiohttp.ClientPayloadError, boto.IncompleteReadError, boto.ResponseStreamingError)
_TRANSPORT = (boto.BotoCoreError, aiohttp.ClientError, OSError)


def _translate(exc: BaseException) -> EncoreError:
    """Map a client-library failure to the error a player sees (404, 502 or 504)."""
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = http_status(exc) or 0
        if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
            return NotFound("the object is not in the origin bucket", code="origin_not_found")
        # 5xx and throttling are the origin's trouble and pass; other 4xx are ours to fix.
        transient = status >= 500 or status == 429 or code in {"SlowDown", "RequestTimeout"}
        return OriginUnavailable(
            f"origin answered {status} {code}", code="origin_error", retryable=transient
        )
    if isinstance(exc, _CUT_SHORT):
        return BadOriginData(
            "the origin's body ended early", code="origin_truncated", retryable=True
        )
    if isinstance(exc, _TIMEOUTS):
        return OriginTimeout("origin did not answer in time")
    if isinstance(exc, _TRANSPORT):
        return OriginUnavailable(
            f"origin unreachable: {type(exc).__name__}", code="origin_unreachable", retryable=True
        )
    raise exc


def _outcome(exc: EncoreError) -> str:
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, OriginTimeout):
        return "timeout"
    return "error"


@contextmanager
def _origin_call(operation: str, key: str) -> Iterator[None]:
    """Count one origin request by outcome, and turn library failures into edge errors.

    Spans the yields of a streaming read too: a reader that goes away is counted "cancelled".
    """
    outcome = "cancelled"
    try:
        yield
        outcome = "ok"
    except EncoreError as exc:
        outcome = _outcome(exc)
        _log_failure(operation, key, exc)
        raise
    except Exception as exc:
        outcome = "error"  # stands if _translate re-raises an exception it does not know
        error = _translate(exc)
        outcome = _outcome(error)
        _log_failure(operation, key, error)
        raise error from exc
    finally:
        metrics.ORIGIN_REQUESTS.labels(operation, outcome).inc()


def _log_failure(operation: str, key: str, error: EncoreError) -> None:
    level = logging.DEBUG if isinstance(error, NotFound) else logging.WARNING
    log.log(level, "origin %s of %s failed: %s (%s)", operation, key, error.message, error.code)


class Origin:
    """Reads from one bucket through an already-open aiobotocore client.

    Each origin request is counted once in ``encore_origin_requests_total`` by its outcome:
    ok, not_found, timeout, error, or cancelled (the reader went away first).
    """

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    async def get_small(self, key: str, limit: int) -> bytes:
        """The whole object at ``key``, refused if it is over ``limit`` bytes (manifests)."""
        with _origin_call("get", key):
            response = await self._client.get_object(Bucket=self._bucket, Key=key)
            async with response["Body"] as body:
                if int(response.get("ContentLength", 0)) > limit:
                    raise BadOriginData(f"the origin object is larger than {limit} bytes")
                data: bytes = await body.read()
        metrics.ORIGIN_BYTES.inc(len(data))
        return data

    async def stream_range(
        self, key: str, start: int, end: int, total: int
    ) -> AsyncGenerator[bytes, None]:
        """Yield bytes ``start..end`` (inclusive) of ``key`` as the origin sends them.

        The object must be ``total`` bytes long. Exactly ``end - start + 1`` bytes are yielded,
        or an error is raised: a short or long body is never passed off as complete.
        """
        expected = end - start + 1
        received = 0
        with _origin_call("get_range", key):
            response = await self._client.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end}"
            )
            async with response["Body"] as body:
                # rclone answers 200 with a correct Content-Range; trust the header, not the status.
                _check_content_range(response, start, end, total)
                while received < expected:
                    chunk: bytes = await body.read(min(CHUNK_BYTES, expected - received))
                    if not chunk:
                        raise BadOriginData(
                            f"the origin's body ended after {received} of {expected} bytes",
                            code="origin_truncated",
                            retryable=True,
                        )
                    received += len(chunk)
                    metrics.ORIGIN_BYTES.inc(len(chunk))
                    yield chunk
                if await body.read(1):
                    raise BadOriginData(
                        f"the origin's body is longer than {expected} bytes",
                        code="origin_overlong",
                    )


def _check_content_range(response: dict[str, Any], start: int, end: int, total: int) -> None:
    content_range = response.get("ContentRange")
    if content_range is None:
        # A server that ignores Range sends the whole object: fine only if that is what we asked.
        length = int(response.get("ContentLength", -1))
        if start == 0 and end == total - 1 and length == total:
            return
        raise BadOriginData("the origin ignored the range request")
    match = _CONTENT_RANGE.fullmatch(content_range)
    if match is None or tuple(map(int, match.groups())) != (start, end, total):
        raise BadOriginData(
            f"the origin sent Content-Range {content_range[:64]!r}, "
            f"expected bytes {start}-{end}/{total}",
            code="origin_object_mismatch",
        )
