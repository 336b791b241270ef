"""`ledger serve` and `ledger migrate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import asyncpg

from ledger.config import ConfigError, Settings
from ledger.credentials import CredentialsError, credentials_for
from ledger.logs import configure_logging
from ledger.migrate import MigrationError, migrate

log = logging.getLogger("ledger")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ledger",
        description="The ledger reference service. Configuration comes from the environment.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve HTTP until SIGTERM, then drain gracefully")
    commands.add_parser("migrate", help="apply pending database migrations (safe to run concurrently)")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"ledger: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format,
        settings.log_level,
        {"color": settings.color, "instance": settings.instance_id, "version": settings.app_version},
    )
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    from ledger.server import serve  # imported here: `migrate` needs no HTTP server

    return serve(settings)


async def _migrate(settings: Settings) -> int:
    credentials = credentials_for(settings)  # the migration Job: secrets-manager, as schema owner
    try:
        conn = await credentials.connect(settings.database_url, timeout=10)
    except CredentialsError as exc:
        log.error("cannot log in to the database: %s", exc.message)
        return 1
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.error("cannot connect to the database: %s", type(exc).__name__)
        return 1
    try:
        applied = await migrate(conn)
    except (MigrationError, asyncpg.PostgresError) as exc:
        log.error("migration failed: %s", exc)
        return 1
    finally:
        await conn.close()
    if applied:
        for migration in applied:
            log.info("applied migration %04d_%s", migration.version, migration.name)
    else:
        log.info("schema already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
