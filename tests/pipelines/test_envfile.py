"""The environment file's one typed definition (cutover.envfile): every writer builds it, the
reader accepts exactly what it declares, and a file reads back as what was written."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from cutover import envconfig, envfile
from cutover.adapters.http_health import SmokeCheck
from cutover.model import COLORS, BadInput
from cutover.rehearsal.stack import LocalStack

ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012"


def full(**changes: Any) -> envfile.EnvFile:
    """An environment file with every section and every optional key set."""
    spec = envfile.EnvFile(
        name="prod",
        router=envfile.Route53Router(
            hosted_zone_id="Z1",
            record_name="ledger.example.com",
            generation_record="_cutover.ledger.example.com",
            set_identifiers={"blue": "b", "green": "g"},
        ),
        deployer=envfile.PulumiDeployer(stack="prod", work_dir=".", config_key="cutover:{color}Image"),
        lock=envfile.DynamoDBLock(table="locks", lease_seconds=60),
        history=envfile.DynamoDBTable(table="history"),
        state=envfile.DynamoDBTable(table="locks"),
        aws=envfile.Aws(region="eu-west-1", endpoint_url="http://127.0.0.1:5000", call_budget_seconds=30),
        analysis=envfile.CloudWatchAnalysis(
            lag_seconds=60,
            window_seconds=300,
            min_requests=100,
            max_error_rate_increase=0.01,
            max_p99_increase_seconds=0.1,
            max_p99_seconds=1.5,
        ),
        colors={
            c: envfile.ColorEntry(
                endpoint=f"https://{c}.example.com",
                urns=[f"urn:{c}"],
                target_group_arn=f"{ARN}:targetgroup/{c}/1",
                load_balancer_arn=f"{ARN}:loadbalancer/app/{c}/1",
            )
            for c in COLORS
        },
        gates={"bake_seconds": 120.0, "ready_successes": 3},
        smoke_checks=(SmokeCheck(name="ready", path="/health/ready"),),
    )
    return dataclasses.replace(spec, **changes)


LOCAL = {
    "router": envfile.EnvoyRouter(layout={"listener_port": 10000}),
    "deployer": envfile.LocalDeployer(
        state_dir="colors",
        ports={"blue": [8001], "green": [8002]},
        env={"LOG_LEVEL": "WARNING"},
        image_env={"v-bad": {"FAIL": "1"}},
    ),
    "lock": envfile.FileLock(path="lock.json", lease_seconds=5),
    "history": envfile.JsonFile(path="history.jsonl"),
    "state": envfile.JsonFile(path="state.json"),
    "analysis": envfile.PrometheusAnalysis(
        url="http://127.0.0.1:9090", selector='{color="%s"}', excluded_routes="/health.*", min_requests=5
    ),
}


@pytest.mark.parametrize("spec", [full(), full(**LOCAL)], ids=["aws", "local"])
def test_what_a_writer_emits_is_what_the_reader_accepts_and_reads_back(spec: envfile.EnvFile) -> None:
    written = json.loads(json.dumps(spec.to_dict()))  # through JSON, as on disk
    config = envconfig.parse(written, Path("prod.json"))
    assert config.router == spec.router.to_dict() and config.lock == spec.lock.to_dict()
    assert envfile.EnvFile.from_dict(written) == spec
    assert envfile.EnvFile.from_dict(written).to_dict() == written


def test_unset_keys_are_not_written_so_the_readers_defaults_apply() -> None:
    minimal = full(state=None, aws=None, analysis=None, gates=None, smoke_checks=None)
    written = minimal.to_dict()
    assert set(written) == {"name", "router", "deployer", "lock", "history", "colors"}
    assert envfile.DynamoDBLock(table="locks").to_dict() == {"type": "dynamodb", "table": "locks"}
    config = envconfig.parse(written, Path("prod.json"))
    assert config.state == {} and config.analysis == {} and config.aws == {}


def test_the_reader_checks_the_keys_the_dataclasses_declare() -> None:
    for (section, kind), keys in envconfig.SECTION_KEYS.items():
        cls = envfile.SECTIONS[section][kind]
        assert keys == cls.keys() and set(keys) == {f.name for f in dataclasses.fields(cls)}
    assert {f.name for f in dataclasses.fields(envfile.ColorEntry)} == envconfig.COLOR_KEYS
    required = {key for key, (_types, needed) in envfile.Route53Router.keys().items() if needed}
    assert required == {"hosted_zone_id", "record_name"}


def test_a_file_the_reader_refuses_is_refused_by_from_dict_too() -> None:
    written = full().to_dict()
    written["lock"]["lease"] = 60
    with pytest.raises(BadInput, match=r"`lock\.lease` is not a known key"):
        envfile.EnvFile.from_dict(written, Path("prod.json"))


def test_the_rehearsal_writes_its_file_with_the_typed_definition(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, pods=1, app_env={})
    written = json.loads(stack.write_env_file().read_text())
    spec = envfile.EnvFile.from_dict(written, tmp_path / "rehearsal.json")
    assert isinstance(spec.router, envfile.EnvoyRouter) and isinstance(spec.lock, envfile.FileLock)
    assert spec.colors["green"].endpoint == stack.layout.color_url("green")
    assert spec.to_dict() == written
