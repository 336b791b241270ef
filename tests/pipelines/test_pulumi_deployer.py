"""The Pulumi deployer's logic, on a fake Automation API stack (the CLI cannot run here)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from cutover.adapters.pulumi_deployer import LOCK_OWNER_ENV, AutomationStack, PulumiDeployer
from cutover.machine import default_actor

GREEN_URNS = ["urn:pulumi:prod::cutover::cutover:app:App::ledger-green"]


class FakeStack:
    def __init__(self, result: str = "succeeded", outputs: dict[str, Any] | None = None) -> None:
        self.config: dict[str, str] = {"cutover:blueImage": "v1", "cutover:greenImage": "v0"}
        self.result = result
        self.ups: list[tuple[list[str], dict[str, str]]] = []
        self.envs: list[dict[str, str]] = []
        self._outputs = (
            outputs if outputs is not None else {"cutover_env": {"colors": {"green": {"urns": GREEN_URNS}}}}
        )

    def set_config(self, key: str, value: str) -> None:
        self.config[key] = value

    def get_config(self, key: str) -> str | None:
        return self.config.get(key)

    def outputs(self) -> dict[str, Any]:
        return self._outputs

    def up(self, targets: list[str], on_output: Callable[[str], None], env: Mapping[str, str]) -> str:
        self.ups.append((targets, dict(self.config)))
        self.envs.append(dict(env))
        on_output("Updating (prod)")
        if self.result == "raise":
            raise RuntimeError("error: update failed")
        return self.result


def test_sets_the_colors_image_then_runs_a_targeted_up() -> None:
    stack = FakeStack()
    lines: list[str] = []
    PulumiDeployer(stack).deploy("green", "v2", lines.append)
    ((targets, config_during_up),) = stack.ups
    assert targets == GREEN_URNS
    assert config_during_up["cutover:greenImage"] == "v2" and config_during_up["cutover:blueImage"] == "v1"
    assert PulumiDeployer(stack).current_image("green") == "v2"
    assert "Updating (prod)" in lines


@pytest.mark.parametrize("result", ["failed", "raise"])
def test_a_failed_up_puts_the_previous_image_back_in_config(result: str) -> None:
    stack = FakeStack(result=result)
    with pytest.raises(RuntimeError):
        PulumiDeployer(stack).deploy("green", "v2", lambda _line: None)
    assert stack.config["cutover:greenImage"] == "v0"


def test_without_exported_targets_nothing_is_changed() -> None:
    stack = FakeStack(outputs={})
    with pytest.raises(RuntimeError, match=r"cutover_env\.colors\.green\.urns"):
        PulumiDeployer(stack).deploy("green", "v2", lambda _line: None)
    assert stack.config["cutover:greenImage"] == "v0" and stack.ups == []


def test_the_digest_the_program_exports_is_returned_for_the_release_state() -> None:
    outputs = {
        "cutover_env": {"colors": {"green": {"urns": GREEN_URNS}}},
        "imageDigests": {"blue": "sha256:" + "a" * 64, "green": "sha256:" + "b" * 64},
    }
    assert (
        PulumiDeployer(FakeStack(outputs=outputs)).deploy("green", "v2", lambda _l: None)
        == "sha256:" + "b" * 64
    )
    assert PulumiDeployer(FakeStack()).deploy("green", "v2", lambda _l: None) is None  # not in ECR: unknown


def test_the_up_runs_as_the_lock_owner_so_the_program_lets_it_through() -> None:
    stack = FakeStack()
    PulumiDeployer(stack, lock_owner="github:ci@42").deploy("green", "v2", lambda _l: None)
    assert stack.envs == [{LOCK_OWNER_ENV: "github:ci@42"}]
    stack = FakeStack()
    PulumiDeployer(stack).deploy("green", "v2", lambda _l: None)  # the release machine's default actor
    assert stack.envs == [{LOCK_OWNER_ENV: default_actor()}]


class FakeAutomationStack:
    """What AutomationStack calls of pulumi.automation.Stack: up() and workspace.env_vars."""

    def __init__(self) -> None:
        self.workspace = SimpleNamespace(env_vars={"PULUMI_CONFIG_PASSPHRASE": "x"})
        self.calls: list[tuple[dict[str, Any], dict[str, str]]] = []

    def up(self, **kwargs: Any) -> Any:
        self.calls.append((kwargs, dict(self.workspace.env_vars)))
        kwargs["on_output"]("Refreshing (prod)")
        return SimpleNamespace(summary=SimpleNamespace(result="succeeded"))


def test_automation_up_refreshes_first_and_passes_the_lock_owner_to_the_program_only_for_that_run() -> None:
    fake = FakeAutomationStack()
    stack = AutomationStack.__new__(AutomationStack)  # no Pulumi CLI here: the fake stands in
    vars(stack)["_stack"] = fake
    lines: list[str] = []
    assert stack.up(GREEN_URNS, lines.append, {LOCK_OWNER_ENV: "alice@laptop"}) == "succeeded"
    ((kwargs, env_during_up),) = fake.calls
    assert kwargs["refresh"] is True and kwargs["target"] == GREEN_URNS and kwargs["target_dependents"]
    assert env_during_up == {"PULUMI_CONFIG_PASSPHRASE": "x", LOCK_OWNER_ENV: "alice@laptop"}
    assert fake.workspace.env_vars == {"PULUMI_CONFIG_PASSPHRASE": "x"} and lines == ["Refreshing (prod)"]


# --------------------------------------------------------------------------- one service of several

GREETER_URNS = [
    "urn:pulumi:dev::cutover::cutover:service:BlueGreenService$cutover:app:App::dev-greeter-green-app"
]


def test_a_service_of_a_multi_service_stack_deploys_with_its_own_keys_and_outputs() -> None:
    """`service` picks the service's config entry, its exported targets and its digests: the
    other services' images, colors and resources are never touched."""
    stack = FakeStack(
        outputs={
            "cutover_envs": {
                "ledger": {"colors": {"green": {"urns": GREEN_URNS}}},
                "greeter": {"colors": {"green": {"urns": GREETER_URNS}}},
            },
            "imageDigests": {
                "ledger": {"green": "sha256:" + "a" * 64},
                "greeter": {"green": "sha256:" + "b" * 64},
            },
        }
    )
    stack.config["cutover:services.greeter.greenImage"] = "v0.1.0"
    stack.config["cutover:services.greeter.colors"] = '{"green": {"replicas": 0, "replicasBeforeRetire": 2}}'
    deployer = PulumiDeployer(stack, service="greeter")
    assert deployer.config_key == "cutover:services.greeter.{color}Image"
    assert deployer.current_image("green") == "v0.1.0"
    digest = deployer.deploy("green", "v0.2.0", lambda _line: None)
    ((targets, during),) = stack.ups
    assert targets == GREETER_URNS and digest == "sha256:" + "b" * 64
    assert during["cutover:services.greeter.greenImage"] == "v0.2.0"
    assert during["cutover:services.greeter.colors"] == '{"green": {"replicas": 2}}'  # un-retired
    assert (during["cutover:greenImage"], during["cutover:blueImage"]) == ("v0", "v1")  # not ledger's keys


def test_a_service_the_stack_does_not_export_changes_nothing() -> None:
    stack = FakeStack(outputs={"cutover_envs": {"ledger": {"colors": {"green": {"urns": GREEN_URNS}}}}})
    before = dict(stack.config)
    with pytest.raises(RuntimeError, match=r"cutover_envs\.greeter\.colors\.green\.urns is empty"):
        PulumiDeployer(stack, service="greeter").deploy("green", "v2", lambda _line: None)
    assert stack.config == before and stack.ups == []


def test_the_automation_stack_sets_a_service_key_by_path() -> None:
    calls: list[tuple[str, str, bool]] = []

    class Stack:
        def set_config(self, key: str, value: Any, *, path: bool = False) -> None:
            calls.append((key, value.value, path))

    automation = AutomationStack.__new__(AutomationStack)  # no Pulumi CLI here: the fake stands in
    vars(automation)["_stack"] = Stack()
    vars(automation)["_automation"] = SimpleNamespace(ConfigValue=lambda value: SimpleNamespace(value=value))
    automation.set_config("cutover:services.greeter.greenImage", "v2")
    automation.set_config("cutover:greenImage", "v2")
    assert calls == [("cutover:services.greeter.greenImage", "v2", True), ("cutover:greenImage", "v2", False)]
