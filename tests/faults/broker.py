"""A Kafka-protocol broker that keeps its data across a restart: Tansu with its ``s3://``
storage engine on moto's S3 server, both on loopback and stopped by PID.

Tansu's ``memory://`` engine (the one ``testkit.brokers`` uses) forgets everything when it
stops, so a broker restart there is data loss by design; ``s3://`` keeps the log in the
bucket, and a restarted broker on the same port serves it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

from plyr_appview.ports import accepts, free_port
from testkit.brokers import tansu_binary
from tests.appview_process import wait_for

_S3_ENV = {
    "AWS_ACCESS_KEY_ID": "faults",
    "AWS_SECRET_ACCESS_KEY": "faults",
    "AWS_DEFAULT_REGION": "eu-west-2",
    "AWS_ALLOW_HTTP": "true",
}


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


class PersistentTansu:
    """moto's S3 server, a bucket, and Tansu storing its log there."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="plyr-faults-broker-"))
        self.s3_port = free_port()
        self.port = free_port()
        moto = Path(sys.executable).with_name("moto_server")
        self.moto = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.s3_port)],
            stdout=(self.workdir / "moto.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: accepts(self.s3_port), timeout=30, what="moto_server")
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=_S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=_S3_ENV["AWS_DEFAULT_REGION"],
        ).create_bucket(
            Bucket="tansu",
            CreateBucketConfiguration={"LocationConstraint": _S3_ENV["AWS_DEFAULT_REGION"]},
        )
        self.broker: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, **_S3_ENV, "AWS_ENDPOINT": self.endpoint}
        log = (self.workdir / "tansu.log").open("ab")
        self.broker = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "s3://tansu/",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for(lambda: accepts(self.port), timeout=30, what="tansu on s3")

    def restart(self, down_seconds: float) -> None:
        """Stop the broker by PID, stay down, start it again on the same port and bucket."""
        _stop(self.broker)
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        _stop(self.broker)
        _stop(self.moto)
        shutil.rmtree(self.workdir, ignore_errors=True)
