"""`make bench` prints results, not its servers' logs (cheap: no benchmark is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import BenchError, Server

ROOT = Path(__file__).resolve().parents[2]

# What rollback_vs_boto3 does with its moto server, requests included, as its own process:
# werkzeug's logger is process-wide, so only a fresh process shows what `make bench` prints.
MOTO_ROUND = """
import boto3
from bench.harness import start_moto
server, endpoint = start_moto()
try:
    client = boto3.client("route53", endpoint_url=endpoint, region_name="eu-west-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
    client.create_hosted_zone(Name="example.com", CallerReference="bench")
    client.list_hosted_zones()
finally:
    server.stop()
print("result: ok")
"""


def test_the_moto_server_of_the_rollback_bench_prints_no_access_log() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", MOTO_ROUND], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "result: ok\n"
    assert ran.stderr == ""  # before: `127.0.0.1 - - [...] "POST /2013-04-01/hostedzone HTTP/1.1" 201 -`


def test_a_server_keeps_its_output_to_itself_until_it_fails_to_start(
    capfd: pytest.CaptureFixture[str],
) -> None:
    script = "import sys; print('GET /health/ready 503'); sys.exit('no such database: bench')"
    server = Server([sys.executable, "-c", script], {})
    with pytest.raises(BenchError, match="exited with 1") as failed:
        server.wait_ready("/health/ready", timeout=30)
    assert "no such database: bench" in str(failed.value) and "GET /health/ready 503" in str(failed.value)
    assert capfd.readouterr() == ("", "")  # nothing printed on its own
