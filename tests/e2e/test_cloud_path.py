"""One source of truth for what runs: cutover's release state, written by the CLI against
a strict moto server, read by the Pulumi program (under mocks, from a fresh checkout)."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from tests.infra.harness import RecordingMocks, run_program
from tests.pipelines.cli_env import Env, cutover


def test_a_full_pulumi_up_from_any_clone_deploys_what_cutover_recorded(env: Env) -> None:
    assert cutover(env, "release", "--image", "v2", "--strategy", "all-at-once").returncode == 0
    assert cutover(env, "rollback").returncode == 0  # blue v1 live again, green keeps v2 (rejected)
    weights_before = env.weights()
    item = env.client("dynamodb").get_item(
        TableName="locks", Key={"lock_id": {"S": "cli-test#release-state"}}, ConsistentRead=True
    )["Item"]
    asked: list[dict[str, Any]] = []

    class ReleaseStateMocks(RecordingMocks):
        """The engine's answer to the getTableItem data source: the item cutover wrote."""

        def call(
            self, args: pulumi.runtime.MockCallArgs
        ) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
            if args.token == "aws:dynamodb/getTableItem:getTableItem":
                asked.append(dict(args.args))
                if json.loads(args.args["key"])["lock_id"]["S"] == "dev#release-state":
                    return {"item": json.dumps(item)}, []
                return {}, []  # the locks: free (the rollback released it); greeter: never released
            if args.token == "aws:ecr/getImage:getImage":
                return {"imageDigest": f"sha256:{args.args['imageTag']}"}, []
            return super().call(args)

    # Pulumi.dev.yaml commits v1.4.1 for both colors of ledger (cutoverEnv dev), v0.1.0 of greeter
    run = run_program("dev", mocks=ReleaseStateMocks)

    def key(lock_id: str) -> dict[str, str]:
        return {"tableName": "cutover-dev-locks", "key": json.dumps({"lock_id": {"S": lock_id}})}

    # each service's lock (an up refuses while cutover operates on it), then its release state
    assert asked == [
        key("dev-greeter"),
        key("dev"),
        key("dev-greeter#release-state"),
        key("dev#release-state"),
    ]
    tags = {
        r.inputs["name"]: r.inputs["values"]["image"]["tag"]
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
    }
    assert tags == {  # what runs, not the committed v1.4.1; greeter, never released, as committed
        "ledger-blue": "v1",
        "ledger-green": "v2",
        "greeter-blue": "v0.1.0",
        "greeter-green": "v0.1.0",
    }
    assert run.outputs["imageDigests"]["ledger"] == {"blue": "sha256:v1", "green": "sha256:v2"}
    # The live weights are declared as read from Route53 (tests/infra/test_day2.py); running
    # the program changes nothing in the account.
    assert env.weights() == weights_before


def test_before_the_first_release_the_committed_tags_are_deployed() -> None:
    run = run_program("dev")  # the data source finds nothing (mocks answer empty)
    tags = {
        r.inputs["name"]: r.inputs["values"]["image"]["tag"]
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
    }
    assert tags == {
        "ledger-blue": "v1.4.1",
        "ledger-green": "v1.4.1",
        "greeter-blue": "v0.1.0",
        "greeter-green": "v0.1.0",
    }
