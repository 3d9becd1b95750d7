"""Opening the lake's filesystem (S3 or a local directory) from the settings, for writers and tools."""

from __future__ import annotations

from urllib.parse import urlsplit

import pyarrow.fs as pafs

from clickstream.settings import Settings


def s3_filesystem(settings: Settings) -> pafs.S3FileSystem:
    endpoint = urlsplit(settings.s3_endpoint_url)
    return pafs.S3FileSystem(
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        region=settings.s3_region,
        endpoint_override=endpoint.netloc,
        scheme=endpoint.scheme or "http",
        allow_bucket_creation=True,
        connect_timeout=5,
        request_timeout=30,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    )


def lake_filesystem(settings: Settings) -> tuple[pafs.FileSystem, str]:
    """The filesystem holding the lake and the base path of its tables on it."""
    if settings.lake_dir is not None:
        base = str(settings.lake_dir.resolve())
        return pafs.LocalFileSystem(), base
    return s3_filesystem(settings), settings.s3_bucket


def bucket_exists(settings: Settings) -> bool:
    """True once the S3 server answers and holds the configured bucket."""
    try:
        info = s3_filesystem(settings).get_file_info(settings.s3_bucket)
    except OSError:
        return False
    return info.type == pafs.FileType.Directory
