"""Hostile and broken password sources: each ends in a clear login failure (503, retried),
never in a crashed start-up, a hang, or a 5-second storm of refused logins.

The password file as the kubelet manages it (a `..data` symlink swapped atomically), bytes
that are not UTF-8, a wrong mount; AWS clients that cannot be created; a Secrets Manager
endpoint that never answers; a secret for another user than the URL's."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.credentials import (
    MAX_PASSWORD_FILE_BYTES,
    CredentialsError,
    IamToken,
    PasswordFile,
    SecretsManagerSecret,
    credentials_for,
)
from ledger.runtime import Runtime

ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-edge"


def _password(path: Path) -> str:
    return asyncio.run(PasswordFile(str(path)).password())


# --- the password file ------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"pw\n", b"pw\r\n", b"pw\n\n", b"pw"])
def test_line_endings_after_the_password_are_not_part_of_it(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "password").write_bytes(content)
    assert _password(tmp_path / "password") == "pw"


def test_a_password_file_that_is_not_utf8_is_a_login_failure(tmp_path: Path) -> None:
    (tmp_path / "password").write_bytes(b"p\xe9w\n")  # Latin-1, or a binary key mounted by mistake
    with pytest.raises(CredentialsError) as error:
        _password(tmp_path / "password")
    assert error.value.message == "cannot read DATABASE_PASSWORD_FILE: UnicodeDecodeError"


def test_a_huge_password_file_is_refused_not_read_for_every_connection(tmp_path: Path) -> None:
    (tmp_path / "password").write_bytes(b"x" * (8 * 1024 * 1024))  # a wrong file mounted
    with pytest.raises(CredentialsError) as error:
        _password(tmp_path / "password")
    assert f"larger than {MAX_PASSWORD_FILE_BYTES} bytes" in error.value.message
    (tmp_path / "password").write_bytes(b"y" * (MAX_PASSWORD_FILE_BYTES - 1) + b"\n")
    assert _password(tmp_path / "password") == "y" * (MAX_PASSWORD_FILE_BYTES - 1)


@pytest.mark.parametrize("where", ["missing", "directory", "empty", "unreadable"])
def test_an_unusable_password_file_is_a_login_failure(tmp_path: Path, where: str) -> None:
    path = tmp_path / "password"
    if where == "directory":
        path.mkdir()
    elif where == "empty":
        path.write_bytes(b"\n")
    elif where == "unreadable":
        # A symlink to itself: open() fails (ELOOP) for every user, root included, where a
        # mode-0 file would still be readable by root (CI runs as root).
        path.symlink_to(path.name)
    with pytest.raises(CredentialsError):
        _password(path)


def _kubelet_layout(root: Path, generation: int) -> None:
    """What the kubelet does to a mounted Secret: a new timestamped directory, then an atomic
    swap of the `..data` symlink; `password` is a symlink to `..data/password`."""
    fresh = root / f"..gen_{generation}"
    fresh.mkdir()
    (fresh / "password").write_text(f"pw-{generation}\n")
    swap = root / "..data_tmp"
    swap.symlink_to(fresh.name)
    os.replace(swap, root / "..data")  # rename(2) over the old symlink: atomic
    if not (root / "password").is_symlink():
        (root / "password").symlink_to("..data/password")


def test_the_kubelets_symlink_swap_never_shows_a_half_written_or_missing_password(tmp_path: Path) -> None:
    _kubelet_layout(tmp_path, 0)
    source = PasswordFile(str(tmp_path / "password"))
    stop = threading.Event()

    def rotate() -> None:
        generation = 1
        while not stop.is_set():
            _kubelet_layout(tmp_path, generation)
            generation += 1

    async def read_many() -> set[str]:
        return {await source.password() for _ in range(3000)}

    rotator = threading.Thread(target=rotate)
    rotator.start()
    try:
        seen = asyncio.run(read_many())
    finally:
        stop.set()
        rotator.join()
    assert len(seen) > 1  # the swap happened while reading
    assert all(value.startswith("pw-") and value[3:].isdigit() for value in seen)


def test_a_password_file_that_breaks_keeps_start_up_retrying_and_saying_why(
    database_url: str, tmp_path: Path
) -> None:
    """Before: a non-UTF-8 file raised UnicodeDecodeError out of the start-up task, which
    died: the pod stayed "starting" forever, with nothing in the log."""
    password_file = tmp_path / "password"
    password_file.write_bytes(b"\xff\xfe\n")
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,  # trust authentication: any password logs in
            "DATABASE_AUTH": "password-file",
            "DATABASE_PASSWORD_FILE": str(password_file),
        }
    )

    async def run() -> tuple[str, bool]:
        runtime = Runtime(settings)
        runtime.start()
        try:
            task = runtime._start_task
            assert task is not None
            while "login failed" not in runtime.startup_failure:
                assert not task.done(), f"start-up gave up: {task.exception()!r}"
                await asyncio.sleep(0.05)
            reason = runtime.startup_failure
            password_file.write_text("fixed\n")  # the operator fixes the Secret
            while not runtime.started:
                await asyncio.sleep(0.05)
            return reason, runtime.started
        finally:
            await runtime.stop(close_within=2)

    reason, started = asyncio.run(asyncio.wait_for(run(), 60))
    assert reason == "database login failed: cannot read DATABASE_PASSWORD_FILE: UnicodeDecodeError"
    assert started


# --- AWS ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("fake_aws")
@pytest.mark.parametrize("mode", ["iam", "secrets-manager"])
def test_an_aws_client_that_cannot_be_created_is_a_login_failure(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # botocore refuses to make a client
    source: IamToken | SecretsManagerSecret = (
        IamToken("postgresql://ledger_app@db.internal:5432/ledger", "eu-west-1")
        if mode == "iam"
        else SecretsManagerSecret(ARN)
    )
    with pytest.raises(CredentialsError) as error:
        asyncio.run(source.password())
    assert error.value.message.endswith(": ProfileNotFound")


@pytest.mark.usefixtures("fake_aws")
def test_a_secret_for_another_user_than_the_urls_is_named_not_retried() -> None:
    from moto import mock_aws

    with mock_aws():
        import boto3

        secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        arn = secrets.create_secret(
            Name="rds!db-other", SecretString=json.dumps({"username": "master", "password": "pw"})
        )["ARN"]
        settings = Settings.from_env(
            {
                # Nothing listens on port 1: only a check before connecting can answer.
                "DATABASE_URL": "postgresql://ledger_app@127.0.0.1:1/ledger",
                "DATABASE_AUTH": "secrets-manager",
                "DATABASE_SECRET_ARN": arn,
            }
        )
        source = credentials_for(settings)
        with pytest.raises(CredentialsError) as error:
            asyncio.run(source.connect(settings.database_url, timeout=5))
    assert "holds the password of 'master'" in error.value.message
    assert "logs in as 'ledger_app'" in error.value.message
    assert source.logins_refused == 0


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers (a blackholed API)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.usefixtures("fake_aws")
def test_ledger_migrate_ends_with_a_clear_error_when_secrets_manager_never_answers(
    silent_endpoint: str,
) -> None:
    """Before: botocore's defaults (60 s timeouts, 5 attempts) outside any deadline: the
    migration Job hung ~5 minutes and was killed at its deadline with nothing logged."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": silent_endpoint,
        "DATABASE_URL": "postgresql://127.0.0.1:1/ledger",  # no user: the secret names it
        "DATABASE_AUTH": "secrets-manager",
        "DATABASE_SECRET_ARN": ARN,
        "LOG_FORMAT": "text",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    print(f"ledger migrate gave up after {time.monotonic() - started:.1f}s")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot read DATABASE_SECRET_ARN: ReadTimeoutError" in result.stdout + result.stderr
