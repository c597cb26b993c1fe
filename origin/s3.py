"""One way to open an S3 client, for the edge and ``encore-origin`` alike."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from origin.settings import OriginSettings


def open_s3_client(
    settings: OriginSettings, *, retries: int = 1, credentials: tuple[str, str] | None = None
) -> AbstractAsyncContextManager[Any]:
    """An aiobotocore S3 client with a bounded pool and timeouts; use it as ``async with``.

    Credentials come from the standard AWS chain (``AWS_ACCESS_KEY_ID`` and friends), unless
    ``credentials`` (access key, secret) are given: then those, and nothing else.
    """
    config = AioConfig(
        # S3-compatible servers (rclone, older MinIO, GCS interop) send whole-object checksums on
        # range GETs, which botocore's default validation rejects.
        response_checksum_validation="when_required",
        request_checksum_calculation="when_required",
        max_pool_connections=settings.max_connections,
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": retries},
        s3={"addressing_style": "path"},
    )
    return get_session().create_client(  # type: ignore[no-any-return]
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region_name,
        config=config,
        **_explicit(credentials),
    )


def _explicit(credentials: tuple[str, str] | None) -> dict[str, str]:
    if credentials is None:
        return {}
    access_key, secret_key = credentials
    # Given outright, they are the whole credentials: botocore reads no session token then.
    return {"aws_access_key_id": access_key, "aws_secret_access_key": secret_key}


def http_status(exc: ClientError) -> int | None:
    """The HTTP status the S3 server answered with, if it answered."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
