"""A real Postgres server on this machine, from the pgserver wheel's binaries.

Used by the local rehearsal, the tests and the benchmarks when no DATABASE_URL is given.
Unlike `pgserver.get_server`, it listens on a TCP port of 127.0.0.1 and can be stopped
and started again on the same port (to rehearse a database restart).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from cutover.local.ports import free_port

_RUN_AS = "pgserver"  # Postgres refuses to run as root; pgserver's own convention


def postgres_bin() -> Path:
    """Directory holding initdb, pg_ctl, postgres, psql and pgbench."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """initdb (once), start, stop and restart a Postgres 16 cluster in `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.host = host
        self.port = port or free_port(host)
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._user = _RUN_AS if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._pg_ctl("-w", "-t", "60", "-l", str(self.log_file), "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` rolls back open transactions and disconnects clients)."""
        if self.running():
            self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")

    def running(self) -> bool:
        result = subprocess.run(
            [str(postgres_bin() / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            user=self._user,
            check=False,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(postgres_bin() / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                self.url(database),
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.destroy()

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _grant_to(self._user, self.data_dir)
        subprocess.run(
            [
                str(postgres_bin() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            user=self._user,
            check=True,
        )
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "max_connections": "300",
            "logging_collector": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# set by cutover.local.postgres\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def _pg_ctl(self, *args: str) -> None:
        if self._user is not None:
            self.log_file.touch()
            shutil.chown(self.log_file, self._user)
        subprocess.run(
            [str(postgres_bin() / "pg_ctl"), "-D", str(self.data_dir), *args],
            capture_output=True,
            user=self._user,
            check=True,
            **_no_stdin(),
        )


def _no_stdin() -> dict[str, Any]:
    return {"stdin": subprocess.DEVNULL}


def _grant_to(user: str, data_dir: Path) -> None:
    """As root: make the binaries usable and `data_dir` owned by the unprivileged `user`."""
    with warnings.catch_warnings():  # pgserver's import warns about XDG_RUNTIME_DIR; irrelevant here
        warnings.simplefilter("ignore")
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    ensure_prefix_permissions(data_dir)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_prefix_permissions(postgres_bin())
    ensure_folder_permissions(postgres_bin(), read | execute)
    ensure_folder_permissions(postgres_bin().parent / "lib", read)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
