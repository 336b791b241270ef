"""The environment file: every missing, mistyped or wrongly typed key is one line naming it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cutover.envconfig import parse
from cutover.model import BadInput

GOOD: dict[str, Any] = {
    "name": "prod",
    "router": {"type": "route53", "hosted_zone_id": "Z1", "record_name": "ledger.example.com"},
    "deployer": {"type": "local", "state_dir": "colors", "ports": {"blue": [8001], "green": [8002]}},
    "lock": {"type": "dynamodb", "table": "locks", "lease_seconds": 60},
    "history": {"type": "dynamodb", "table": "history"},
    "aws": {"region": "eu-west-1"},
    "colors": {"blue": {"endpoint": "https://blue.x"}, "green": {"endpoint": "https://green.x", "urns": []}},
}


def test_a_good_file_parses() -> None:
    env = parse(copy.deepcopy(GOOD), Path("prod.json"))
    assert env.name == "prod" and env.endpoints["green"] == "https://green.x"


BAD: list[tuple[Callable[[dict[str, Any]], Any], str]] = [
    (lambda s: s["router"].pop("hosted_zone_id"), "`router.hosted_zone_id` is missing"),
    (lambda s: s["router"].update(hosted_zone="Z"), "`router.hosted_zone` is not a known key"),
    (lambda s: s["router"].update(set_identifiers={"blue": "b"}), "`router.set_identifiers.green`"),
    (lambda s: s["lock"].update(lease_seconds="60"), "`lock.lease_seconds` must be a number"),
    (lambda s: s["lock"].update(lease_seconds=-1), "`lock.lease_seconds` must be more than 0"),
    (lambda s: s["deployer"].update(ports={"blue": 8001, "green": [8002]}), "`deployer.ports.blue`"),
    (lambda s: s["deployer"].update(ports={}), "`deployer.ports.blue`"),
    (lambda s: s["deployer"].update(env={"PORT": 8000}), "`deployer.env.PORT` must be a string"),
    (lambda s: s["aws"].update(endpoint_url="not a url"), "`aws.endpoint_url` must be an http(s) URL"),
    (lambda s: s.update(name=["x"]), "`name` must be"),
    (lambda s: s.update(name="prod/../x"), "`name` must be"),
    (lambda s: s.update(gates={"bake_seconds": float("nan")}), "`gates.bake_seconds` must be a number"),
    (lambda s: s.update(gates={"ready_timeout": 0}), "gates.ready_timeout must be more than 0"),
    (lambda s: s.update(smoke_checks=[{"name": "x", "path": "/", "expect_status": "200"}]), "expect_status"),
    (lambda s: s.update(smoke_checks=[{"name": "x", "path": 5}]), "`smoke_checks[0].path`"),
    (lambda s: s.update(smoke_checks={"name": "x"}), "`smoke_checks` must be a list"),
    (lambda s: s["colors"]["blue"].update(endpont="https://x"), "`colors.blue.endpont` is not a known key"),
    (lambda s: s.update(extra=1), "`extra` is not a known key"),
    (lambda s: s["history"].update(type="s3"), "`history.type` must be one of dynamodb, file"),
    (
        lambda s: s.update(analysis={"type": "datadog"}),
        "`analysis.type` must be one of prometheus, cloudwatch",
    ),
    (lambda s: s.update(analysis={"type": "prometheus"}), "`analysis.url` is missing"),
    (
        lambda s: s.update(analysis={"type": "prometheus", "url": "http://p", "min_request": 5}),
        "`analysis.min_request`",
    ),
    (
        lambda s: s.update(analysis={"type": "cloudwatch"}),
        "`colors.blue.load_balancer_arn` must be the ALB's ARN",
    ),
    (
        lambda s: s.update(analysis={"type": "prometheus", "url": "prom:9090"}),
        "`analysis.url` must be an http(s) URL",
    ),
    (
        lambda s: s.update(analysis={"type": "prometheus", "url": "http://p", "selector": "color=%s"}),
        "`analysis.selector`",
    ),
    (
        lambda s: s.update(analysis={"type": "prometheus", "url": "http://p", "min_requests": 1.5}),
        "`analysis.min_requests`",
    ),
    (
        lambda s: s.update(analysis={"type": "prometheus", "url": "http://p", "max_error_rate_increase": 5}),
        "is a share",
    ),
    (
        lambda s: s.update(
            analysis={"type": "prometheus", "url": "http://p", "window_seconds": float("inf")}
        ),
        "finite",
    ),
    (
        lambda s: s["deployer"].update(image_env={"v2": {"X": 1}}),
        "`deployer.image_env.v2.X` must be a string",
    ),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m for _, m in BAD])
def test_a_bad_key_is_refused_naming_it(edit: Callable[[dict[str, Any]], Any], message: str) -> None:
    spec = copy.deepcopy(GOOD)
    edit(spec)
    with pytest.raises(BadInput) as refused:
        parse(spec, Path("prod.json"))
    assert message in str(refused.value) and "\n" not in str(refused.value)
