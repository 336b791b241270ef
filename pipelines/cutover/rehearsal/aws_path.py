"""`cutover rehearse` on the AWS path (the default): the same release and rollback as the
Envoy-weights rehearsal, but traffic is switched the way it is in AWS.

cutover changes Route53 weighted records (moto, strict as Route53 is); clients find the
service through DNS (an authoritative server answering from those records, with the
alias target's TTL) and caching resolvers (most honour the TTL, a share holds answers
longer); each answer leads to that color's ALB-shaped Envoy (60 s idle timeouts, cookie
stickiness, target-group health checks). So the old color keeps getting requests after
its weight went to 0, for as long as cached answers live: the report measures it, and
the old color is retired only once its traffic has stopped (`cutover retire`).

Then the second service, greeter (examples/greeter), is released and rolled back the same
way, with its own environment file, while ledger's load keeps running: the ALBs are shared
(a host rule per service), so its release must leave ledger's records and requests alone.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from cutover import envconfig
from cutover.build import build_retire_parts
from cutover.local.aws import weighted_records
from cutover.machine import Gates, ReleaseMachine, Result
from cutover.model import COLORS, Color, Traffic
from cutover.rehearsal import greeter
from cutover.rehearsal.aws_stack import GREETER_ENV_NAME, AwsShape, AwsStack
from cutover.rehearsal.load import LoadGenerator, LoadResult
from cutover.rehearsal.rehearse import FOREVER, Rehearsal
from cutover.rehearsal.stickiness import EnvoyHealthMonitor


class AwsRehearsal(Rehearsal):
    def run(self) -> dict[str, Any]:
        plan = self.plan
        shape = AwsShape(dns_ttl_seconds=plan.dns_ttl_seconds)
        stack = AwsStack(self.workdir, plan.pods, self.app_env(), shape, settle_seconds=plan.settle_seconds)
        report: dict[str, Any] = {}
        load: LoadGenerator | None = None
        monitors: list[EnvoyHealthMonitor] = []
        with stack.credentials():
            try:
                self.say("starting Postgres (pgserver) and migrating")
                stack.start_database()
                accounts = self._open_accounts(stack)
                balance_before = self._total_balance(stack)
                if plan.faults:  # the colors log in as ledger_app with a password file (rotated later)
                    from cutover.rehearsal.aws_faults import prepare_stack

                    prepare_stack(stack)
                self.say(
                    f"starting AWS here: moto (Route53 strict about DELETEs, DynamoDB), "
                    f"{stack.zone.record_name} weighted blue 100 / green 0, DNS TTL {shape.dns_ttl_seconds}s"
                )
                stack.start_aws()
                second = (
                    f" and greeter blue ({len(stack.greeter_ports['blue'])} processes, {greeter.BLUE_IMAGE})"
                    if stack.has_greeter
                    else " (examples/greeter is not here: no second service)"
                )
                self.say(
                    f"starting blue ({plan.pods} ledger processes, v1){second} behind its ALB "
                    f"({stack.balancers['blue'].url}, a host rule per service, idle timeout "
                    f"{shape.idle_timeout_seconds:g}s); green's ALB at {stack.balancers['green'].url}"
                )
                stack.start_colors_and_balancers("v1")
                self.say(f"`cutover status --env {stack.env_file}` shows the live state")
                self.exemptions.colors["green"].append((self.started, FOREVER))
                monitors = [
                    EnvoyHealthMonitor(
                        stack.balancers[c].admin_url, stack.instance_by_port(c), self.exemptions
                    )
                    for c in COLORS
                ]
                for monitor in monitors:
                    monitor.start()
                load = LoadGenerator(
                    stack.dns_target(plan.hold_share, plan.hold_factor),
                    accounts,
                    clients=plan.clients,
                    session_length=plan.session_length,
                )
                load.start()
                self.say(
                    f"load: {plan.clients} clients resolving {stack.zone.record_name} through caching "
                    f"resolvers ({plan.hold_share:.0%} hold answers {plan.hold_factor:g}x the TTL)"
                )
                time.sleep(plan.warmup)

                gates = self.gates()
                machine = stack.machine(gates, self.reporter, time.monotonic)
                self.say(
                    f"release green v2 through Route53, canary {','.join(map(str, plan.strategy))}, "
                    f"bake {plan.bake:g}s per step"
                )
                release = machine.release("v2", plan.strategy, bake=plan.bake)
                self.stop_if_cancelled()
                time.sleep(plan.observe)
                self.say("on-call: cutover rollback")
                rollback = machine.rollback()
                self.stop_if_cancelled()
                retire = self._retire(stack, machine, "green", load)
                self.stop_if_cancelled()
                services = {greeter.NAME: self._greeter(stack)} if stack.has_greeter else {}

                faults = self._aws_faults(stack, load, gates) if plan.faults else None
                self.stop_if_cancelled()

                self.say("stopping the load (operations in flight finish first)")
                result = load.stop()
                load = None
                for monitor in monitors:
                    monitor.stop()
                monitors = []
                report = self._report(stack, result, balance_before, release, rollback, faults)  # type: ignore[arg-type]
                report.update(self._dns_report(stack, result, rollback, retire))
                report["services"] = services
                report["checks_passed"] = (
                    report["checks_passed"]
                    and retire["outcome"] == "retired"
                    and all(f["as_expected"] for f in faults or [])
                    and all(s["passed"] for s in services.values())
                )
            finally:
                self.tear_down(report, stack, load, monitors, "colors (SIGTERM), ALBs, DNS, moto, Postgres")
        return report

    def gates(self) -> Gates:
        return Gates(
            ready_successes=3, ready_interval=0.3, ready_timeout=30, bake_seconds=self.plan.bake,
            health_interval=0.3, sync_timeout=10,
        )  # fmt: skip

    # -------------------------------------------------------------- retire

    def _retire(
        self, stack: AwsStack, machine: ReleaseMachine, color: Color, load: LoadGenerator
    ) -> dict[str, Any]:
        """`cutover retire --wait`, as on-call runs it: it waits until cached DNS answers have
        expired and the old color has had no request for the settling window, then stops
        it. None of the requests it still gets may fail."""
        self.say(f"cutover retire {color} --wait: until its cached DNS answers expire and its traffic stops")
        meter, policy = build_retire_parts(envconfig.load(str(stack.env_file)), self.plan.settle_seconds)
        policy = dataclasses.replace(policy, wait_interval=0.5, wait_timeout=self.plan.retire_timeout)
        start = time.monotonic()
        result = machine.retire(meter, policy, color, wait=True)
        end = time.monotonic()
        served = [
            a for a in load.result.attempts if start <= a.at < end and a.served_by.startswith(f"{color}/")
        ]
        return {
            "color": color,
            "outcome": "retired" if result.exit_code == 0 else "refused",
            "waited_seconds": round(end - start, 2),
            "requests_while_waiting": len(served),
            "failed_requests": len(load.result.failed(start, end)),
            "reason": result.reason,
        }

    # -------------------------------------------------------------- the second service

    def _greeter(self, stack: AwsStack) -> dict[str, Any]:
        """greeter's release onto green and on-call rollback, through cutover's route53 router
        with greeter's environment file, under its light client, while ledger's load runs;
        ledger's records must come out as they went in."""
        plan = self.plan
        route53 = stack.aws.client("route53")

        def ledger_records() -> list[dict[str, Any]]:
            names = (stack.zone.record_name, stack.zone.generation_name)
            listed = route53.list_resource_record_sets(HostedZoneId=stack.zone_id)["ResourceRecordSets"]
            return sorted(
                (r for r in listed if r["Name"].rstrip(".") in {n.rstrip(".") for n in names}),
                key=lambda r: (r["Name"], r.get("SetIdentifier", "")),
            )

        before = ledger_records()
        client = greeter.LightClient(stack.greeter_target(plan.hold_factor))
        client.start()
        try:
            self.say(
                f"greeter: {client.clients} light clients resolving {stack.greeter_zone.record_name} "
                f"(the same ALBs, greeter's host rule); `cutover status --env {stack.greeter_env_file}`"
            )
            time.sleep(plan.warmup / 2)
            machine = stack.greeter_machine(self.gates(), self.reporter, time.monotonic)
            self.say(
                f"release greeter {greeter.RELEASE_IMAGE} onto green through Route53 "
                f"(env {GREETER_ENV_NAME}), canary {','.join(map(str, plan.strategy))}, ledger's load running"
            )
            release = machine.release(greeter.RELEASE_IMAGE, plan.strategy, bake=plan.bake)
            self.stop_if_cancelled()
            # At least a TTL on green 100: every client that honours it has asked green by then.
            time.sleep(max(plan.observe, stack.shape.dns_ttl_seconds + 0.5))
            self.say(f"on-call: cutover rollback --env {GREETER_ENV_NAME}")
            rollback = stack.greeter_machine(self.gates(), self.reporter, time.monotonic).rollback()
            self.stop_if_cancelled()
            time.sleep(plan.observe)
        finally:
            result = client.stop()
        after = ledger_records()
        failed = result.failed()
        live = weighted_records(route53, stack.zone_id, stack.greeter_zone.record_name)
        weights = {r["SetIdentifier"]: int(r["Weight"]) for r in live}
        report: dict[str, Any] = {
            "release": _outcome(release),
            "rollback": _outcome(rollback),
            "requests": result.requests,
            "failed_requests": len(failed),
            "served_by": result.served_by_color(),
            "weights_after": weights,
            "ledger_records_untouched": before == after,
        }
        if failed:
            report["failed_examples"] = [a.describe(self.started) for a in failed[:5]]
        report["passed"] = (
            release.state.value == "succeeded"
            and [s.get("to", {}).get("green") for s in release.steps][-1:] == [100]
            and rollback.state.value == "succeeded"
            and weights == {"blue": 100, "green": 0}
            and result.requests > 0
            and not failed
            and before == after
        )
        return report

    # -------------------------------------------------------------- report

    def _dns_report(
        self, stack: AwsStack, load: LoadResult, rollback: Result, retire: dict[str, Any]
    ) -> dict[str, Any]:
        """How long the old color kept answering after the last weight change."""
        assert stack.router is not None and stack.dns is not None
        last_at, last = (
            stack.router.changes[-1] if stack.router.changes else (self.started, Traffic.all_on("blue"))
        )
        old = next((c for c in COLORS if last.weight(c) == 0), "green")
        after = sorted(a.at for a in load.attempts if a.at >= last_at and a.served_by.startswith(f"{old}/"))
        return {
            "router": "route53",
            "dns_ttl_seconds": stack.shape.dns_ttl_seconds,
            "dns_answers": dict(stack.dns.answers),
            "after_last_change": {
                "old_color": old,
                "requests": len(after),
                "last_answer_s": round(after[-1] - last_at, 3) if after else None,
                "bound_s": stack.shape.dns_ttl_seconds * self.plan.hold_factor,
            },
            "retire": retire,
        }

    def _aws_faults(self, stack: AwsStack, load: LoadGenerator, gates: Gates) -> list[dict[str, Any]]:
        from cutover.rehearsal.aws_faults import run_faults

        return run_faults(self, stack, load, gates)


def _outcome(result: Result) -> dict[str, Any]:
    return {"outcome": result.state.value, "seconds": round(result.seconds, 2), "reason": result.reason}
