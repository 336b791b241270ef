"""The real-component fixtures of tests/pipelines (strict moto server, ledger processes as
the colors), for the end-to-end tests that cross into infra/."""

from tests.pipelines.conftest import env, moto_server

__all__ = ["env", "moto_server"]
