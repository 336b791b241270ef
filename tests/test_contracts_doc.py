"""docs/contracts.md names what the code really offers: every route, every command, every
exit code, every key of the environment file, every key of the JSON results, every stack
output. A new one that is not documented fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import typer.main
from starlette.routing import BaseRoute

from cutover import envfile
from cutover.cli import app as cli
from cutover.machine import EXIT_CODES, Result
from ledger.app import create_app
from ledger.config import Settings
from tests.e2e.test_rehearse import AWS_CONTRACT, FAULTS_CONTRACT
from tests.e2e.test_rehearse import CONTRACT as REHEARSAL_CONTRACT

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "contracts.md").read_text()


def _table_rows(heading: str) -> str:
    """The text of the section under `heading` (up to the next heading of any level)."""
    start = DOC.index(heading)
    following = re.search(r"\n#{2,3} ", DOC[start + len(heading) :])
    return DOC[start : start + len(heading) + (following.start() if following else len(DOC))]


def test_every_route_is_documented() -> None:
    app, _ = create_app(Settings.from_env({"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}))
    router = app
    while not hasattr(router, "routes"):
        router = router.app  # type: ignore[attr-defined]
    paths = {route.path for route in router.routes if isinstance(route, BaseRoute)}  # type: ignore[attr-defined]
    section = _table_rows("## ledger's HTTP API")
    assert paths == set(re.findall(r"\| `(/[^`]*)` \|", section))


def test_every_command_and_exit_code_is_documented() -> None:
    group = typer.main.get_group(cli)
    for name in group.commands:
        assert f"`cutover {name}`" in DOC, name
    codes = {*EXIT_CODES.values(), 143}
    section = _table_rows("## cutover")
    assert codes == {int(c) for c in re.findall(r"^\| (\d+) \|", section, flags=re.M)}


def test_every_key_of_the_environment_file_is_documented() -> None:
    section = _table_rows("### The environment file")
    for field in envfile.EnvFile.ORDER:
        assert f"| `{field}` |" in section, field
    classes = [c for kinds in envfile.SECTIONS.values() for c in kinds.values()]
    classes += [*envfile.ANALYSES.values(), envfile.Aws, envfile.ColorEntry]
    for cls in classes:
        spec = cls.keys()  # the section's keys and types (a classmethod, not dict.keys)
        for key in spec:
            assert f"`{key}`" in section, f"{cls.__name__}.{key}"
        if cls.TYPE:
            assert f"`type: {cls.TYPE}`" in section, cls.__name__


def test_the_json_results_are_documented() -> None:
    section = _table_rows("## cutover")
    keys = re.findall(r'^\s+"(\w+)":', inspect.getsource(Result.as_dict), flags=re.M)
    assert len(keys) >= 10
    for key in [*keys, "next"]:  # `next`: added by the CLI (what to run now)
        assert f"`{key}`" in section, key


@pytest.mark.parametrize("key", sorted(REHEARSAL_CONTRACT | AWS_CONTRACT | FAULTS_CONTRACT))
def test_the_rehearsal_report_keys_the_bar_relies_on_are_documented(key: str) -> None:
    assert f"`{key}`" in _table_rows("### `cutover rehearse --json`")


def test_every_stack_output_is_documented() -> None:
    from tests.infra.harness import run_program

    outputs = set(run_program("prod").outputs)
    section = _table_rows("## infra (stack config)")
    assert outputs == set(re.findall(r"`(\w+)`", section.split("Stack outputs:")[1]))
