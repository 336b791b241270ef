"""Fixtures shared by every test: one real Postgres server for the whole run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cutover.local.postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A real Postgres 16 (pgserver's binaries) on a free port of 127.0.0.1."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data")
    server.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def empty_database(postgres: EmbeddedPostgres) -> str:
    """URL of a new, empty database (no schema) for one test."""
    return postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
