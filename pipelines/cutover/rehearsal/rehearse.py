"""`cutover rehearse`: a complete blue/green release and an on-call rollback of ledger on
this machine, under live load, through a real Envoy, with the real release code.

Timeline: Postgres + migrations -> blue (N pods) behind Envoy -> load starts -> release
green (canary) -> promote -> blue stays warm -> on-call rollback to blue -> the idle color
stops gracefully -> [faults] -> load stops -> everything is torn down. Then the report:
did any request fail, did any session move while its instance was healthy, is every
acknowledged transfer in the database exactly once, and is the money all there.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cutover.cancel import Cancelled, CancelScope
from cutover.envoy.weights import wait_healthy
from cutover.local.database import query
from cutover.local.process import HttpProbe, wait_until
from cutover.machine import Gates, Reporter, Result
from cutover.model import COLORS, Color, Traffic
from cutover.rehearsal.load import LoadGenerator, LoadResult
from cutover.rehearsal.stack import BROKEN_TAG_SUFFIX, LocalStack
from cutover.rehearsal.stickiness import EnvoyHealthMonitor, Exemptions, sticky_violations

FOREVER = float("inf")


class HasDatabase(Protocol):
    @property
    def database_url(self) -> str: ...


class Stoppable(Protocol):
    def stop_all(self) -> list[int]: ...


@dataclass(frozen=True)
class Plan:
    pods: int = 3
    clients: int = 16
    accounts: int = 40
    opening_balance: int = 100_000
    warmup: float = 3.0
    bake: float = 4.0
    observe: float = 3.0
    strategy: tuple[int, ...] = (10, 50, 100)
    drain_seconds: float = 3.0
    faults: bool = False
    # Requests per client session. Canary traffic comes from new sessions (old ones keep
    # their color), so short windows need short sessions for the 10% step to see any.
    session_length: tuple[int, int] = (15, 40)
    # The AWS path (router "route53"): DNS TTL scaled down with every other window (an
    # ALB's is 60 s), the share of clients that hold answers longer and by how much, and how
    # long the old color must have had no request before `retire` accepts.
    router: str = "route53"  # or "envoy": one Envoy splits traffic by weight
    dns_ttl_seconds: int = 4
    hold_share: float = 0.2
    hold_factor: float = 3.0
    settle_seconds: float = 2.0
    retire_timeout: float = 60.0

    @classmethod
    def short(cls, faults: bool = False, router: str = "route53") -> Plan:
        return cls(
            clients=10, warmup=1.5, bake=2.0, observe=1.5, faults=faults, session_length=(4, 12),
            router=router, dns_ttl_seconds=2, settle_seconds=1.0,
        )  # fmt: skip


class Rehearsal:
    def __init__(
        self,
        plan: Plan,
        say: Callable[[str], None],
        reporter: Reporter,
        workdir: Path | None = None,
        cancel: CancelScope | None = None,
    ):
        self.plan = plan
        self.cancel = cancel  # SIGINT/SIGTERM: the step in flight ends (traffic restored), then teardown
        self.say = say
        self.reporter = reporter
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="cutover-rehearsal-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.exemptions = Exemptions()
        self.started = time.monotonic()
        self._fault_windows: list[tuple[float, float]] = []

    def stop_if_cancelled(self) -> None:
        """After each step: a signal that ended it (the machine restores traffic and returns)
        stops the rehearsal here; the caller's `finally` tears everything down."""
        if self.cancel is not None and self.cancel.received is not None:
            self.say("cancelled: tearing down")
            raise Cancelled(self.cancel.received)

    def app_env(self) -> dict[str, str]:
        """ledger's settings in every color (its keep-alive is its own default: 75 s)."""
        return {
            "DRAIN_SECONDS": f"{self.plan.drain_seconds:g}",
            "SHUTDOWN_TIMEOUT_SECONDS": "10",
            "LOG_LEVEL": "WARNING",
            "READY_CACHE_SECONDS": "0.25",
            "DB_POOL_MAX": "8",
        }

    def run(self) -> dict[str, Any]:
        plan = self.plan
        stack = LocalStack(self.workdir, plan.pods, self.app_env())
        report: dict[str, Any] = {}
        load: LoadGenerator | None = None
        monitors: list[EnvoyHealthMonitor] = []
        try:
            self.say("starting Postgres (pgserver) and migrating")
            stack.start_database()
            accounts = self._open_accounts(stack)
            balance_before = self._total_balance(stack)
            self.say(f"starting blue ({plan.pods} ledger processes, v1) and Envoy on {stack.layout.url}")
            stack.start_colors_and_proxy("v1", time.monotonic)
            env_file = stack.write_env_file()
            self.say(f"`cutover status --env {env_file}` shows the live state")
            # Green has no weight until the release gives it some.
            self.exemptions.colors["green"].append((self.started, FOREVER))
            monitors = [EnvoyHealthMonitor(stack.layout.admin_url, stack.instance_by_port(), self.exemptions)]
            monitors[0].start()
            load = LoadGenerator(
                stack.layout.url, accounts, clients=plan.clients, session_length=plan.session_length
            )
            load.start()
            self.say(f"load: {plan.clients} concurrent clients, sessions with cookies, reads and transfers")
            time.sleep(plan.warmup)

            gates = Gates(
                ready_successes=3, ready_interval=0.3, ready_timeout=30, bake_seconds=plan.bake,
                health_interval=0.3, sync_timeout=10,
            )  # fmt: skip
            machine = stack.machine(gates, self.reporter)
            self.say(
                f"release green v2, canary {','.join(map(str, plan.strategy))}, bake {plan.bake:g}s per step"
            )
            release = machine.release("v2", plan.strategy, bake=plan.bake)
            self.stop_if_cancelled()
            time.sleep(plan.observe)
            self.say("on-call: cutover rollback")
            rollback = machine.rollback()
            self.stop_if_cancelled()
            time.sleep(plan.observe)
            self.say("stopping the idle color (green) gracefully")
            assert stack.deployer is not None
            stack.deployer.stop("green")

            faults = (
                self._faults(stack, load, machine_factory=lambda: stack.machine(gates, self.reporter))
                if plan.faults
                else None
            )

            self.say("stopping the load (operations in flight finish first)")
            result = load.stop()
            load = None
            monitors.pop().stop()
            report = self._report(stack, result, balance_before, release, rollback, faults)
        finally:
            self.tear_down(report, stack, load, monitors, "colors (SIGTERM), Envoy, Postgres")
        return report

    def tear_down(
        self,
        report: dict[str, Any],
        stack: Stoppable,
        load: LoadGenerator | None,
        monitors: list[EnvoyHealthMonitor],
        parts: str,
    ) -> None:
        """Whatever happened: stop the load and the monitors, then every process (the report
        says how many outlived it), and decide `passed`."""
        if load is not None:
            load.stop(timeout=10)
        for monitor in monitors:
            monitor.stop()
        self.say(f"tearing down: {parts}")
        left = stack.stop_all()
        report["processes_left"] = len(left)
        report["seconds"] = round(time.monotonic() - self.started, 1)
        report["passed"] = bool(report.get("checks_passed")) and not left
        if self._tmp is not None:
            self._tmp.cleanup()

    # -------------------------------------------------------------- set-up

    def _open_accounts(self, stack: HasDatabase) -> list[str]:
        ids = [uuid.uuid4() for _ in range(self.plan.accounts)]
        for account_id in ids:
            query(
                stack.database_url,
                "INSERT INTO accounts (id, name, currency, balance) VALUES ($1, 'rehearsal', 'EUR', $2)",
                account_id,
                self.plan.opening_balance,
            )
        return [str(i) for i in ids]

    def _total_balance(self, stack: HasDatabase) -> int:
        return int(
            query(stack.database_url, "SELECT coalesce(sum(balance), 0) AS total FROM accounts")[0]["total"]
        )

    # -------------------------------------------------------------- faults

    def _faults(
        self, stack: LocalStack, load: LoadGenerator, machine_factory: Callable[[], Any]
    ) -> list[dict[str, Any]]:
        assert stack.deployer is not None
        deployer = stack.deployer
        outcomes = []

        def window(name: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
            attempts = [a for a in load.result.attempts if start <= a.at < end]
            failed = [a for a in attempts if a.status is None or a.status >= 500]
            self._fault_windows.append((start, end))
            return {
                "scenario": name,
                "seconds": round(end - start, 2),
                "requests": len(attempts),
                "failed_requests": len(failed),
                **extra,
            }

        def restart(index: int) -> None:
            deployer.start_instance("blue", index)
            stack.pids_seen.add(deployer.instance_pid("blue", index))
            _wait_ready(stack.ports["blue"][index])
            wait_healthy(stack.layout, stack.ports["blue"])

        # 1. SIGTERM one pod: it drains; nothing may fail.
        self.say("fault: SIGTERM blue-0 mid-load (graceful drain)")
        pid = deployer.instance_pid("blue", 0)
        start = time.monotonic()
        self.exemptions.instances["blue/blue-0"].append((start, FOREVER))
        os.kill(pid, signal.SIGTERM)
        exited = deployer.wait_exit(pid, self.plan.drain_seconds + 12)
        restart(0)
        time.sleep(1.0)
        outcomes.append(
            window("sigterm_pod", start, time.monotonic(), exited_gracefully=exited, expect_failed=0)
        )

        # 2. SIGKILL one pod: requests in flight on it may fail; clients retry with their keys.
        self.say("fault: SIGKILL blue-1 mid-load")
        pid = deployer.instance_pid("blue", 1)
        start = time.monotonic()
        self.exemptions.instances["blue/blue-1"].append((start, FOREVER))
        os.kill(pid, signal.SIGKILL)
        deployer.wait_exit(pid, 5)
        time.sleep(1.0)
        restart(1)
        time.sleep(1.0)
        outcomes.append(window("sigkill_pod", start, time.monotonic()))

        # 3. Restart Postgres: readiness dips, clients retry, nothing acknowledged is lost.
        self.say("fault: restart Postgres mid-load")
        start = time.monotonic()
        stack.postgres.stop("fast")
        time.sleep(1.0)
        stack.postgres.start()
        for port in stack.ports["blue"]:
            _wait_ready(port, timeout=30)
        wait_healthy(stack.layout, stack.ports["blue"])
        time.sleep(1.0)
        end = time.monotonic()
        self.exemptions.everything.append((start, end))
        outcomes.append(window("postgres_restart", start, end))

        # 4. A broken build: green never gets ready; the release must fail with traffic on blue.
        self.say("fault: release a broken build (green never becomes ready)")
        start = time.monotonic()
        machine = machine_factory()
        machine.gates = Gates(
            ready_successes=3, ready_interval=0.3, ready_timeout=6, bake_seconds=1, health_interval=0.3
        )
        broken = machine.release(f"v3{BROKEN_TAG_SUFFIX}", self.plan.strategy, bake=1)
        traffic = machine.router.read()
        end = time.monotonic()
        green_served = sum(
            1 for a in load.result.attempts if start <= a.at < end and a.served_by.startswith("green/")
        )
        deployer.stop("green")
        outcomes.append(
            window(
                "broken_release",
                start,
                end,
                release_outcome=broken.state.value,
                reason=broken.reason,
                traffic_after={"blue": traffic.blue, "green": traffic.green},
                served_by_green=green_served,
                rolled_back_as_expected=broken.exit_code == 1
                and traffic.active == "blue"
                and green_served == 0,
            )
        )
        return outcomes

    # -------------------------------------------------------------- report

    def _report(
        self,
        stack: LocalStack,
        load: LoadResult,
        balance_before: int,
        release: Result,
        rollback: Result,
        faults: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        assert stack.router is not None
        changes = stack.router.changes
        self._weight_zero_windows(changes)
        violations = sticky_violations(load.attempts, self.exemptions)
        keys = list(load.acknowledged)
        rows = query(
            stack.database_url,
            "SELECT idempotency_key, id FROM transfers WHERE idempotency_key LIKE 'rehearsal-%'",
        )
        persisted = {row["idempotency_key"]: str(row["id"]) for row in rows}
        acknowledged_and_persisted = sum(1 for k in keys if persisted.get(k) == load.acknowledged[k])
        balance_after = self._total_balance(stack)
        failed = load.failed()
        report: dict[str, Any] = {
            "requests": load.requests,
            "failed_requests": len(failed),
            "served_by": load.served_by_color(),
            "sticky_violations": len(violations),
            "transfers_acknowledged": len(keys),
            "transfers_persisted": len(persisted),
            "transfers_acknowledged_and_persisted": acknowledged_and_persisted,
            "transfers_refused_insufficient_funds": load.refused,
            "operations_given_up": load.gave_up,
            "money_conserved": balance_before == balance_after,
            "balance_before": balance_before,
            "balance_after": balance_after,
            "release": _operation(release),
            "rollback": _operation(rollback),
            "traffic_follow": self._traffic_follow(changes, load),
        }
        checks = [
            report["sticky_violations"] == 0,
            report["money_conserved"],
            len(persisted) == len(keys) == acknowledged_and_persisted,
            load.gave_up == 0,
            release.state.value == "succeeded",
            rollback.state.value == "succeeded",
        ]
        if faults is None:
            checks.append(report["failed_requests"] == 0)
        else:
            report["faults"] = faults
            report["transfers_lost"] = len(keys) - acknowledged_and_persisted
            fault_ok = {f["scenario"]: f for f in faults}
            checks += [
                fault_ok["sigterm_pod"]["failed_requests"] == 0,
                bool(fault_ok["broken_release"]["rolled_back_as_expected"]),
            ]
            # Outside the fault windows, nothing may fail either.
            report["failed_requests_outside_faults"] = sum(
                1 for a in failed if not any(s <= a.at < e for s, e in self._fault_windows)
            )
        if violations:
            report["sticky_violation_examples"] = [v.__dict__ for v in violations[:5]]
        if failed:
            report["failed_examples"] = [a.describe(self.started) for a in failed[:5]]
        report["checks_passed"] = all(checks)
        return report

    def _weight_zero_windows(self, changes: list[tuple[float, Traffic]]) -> None:
        """Turn the router's change log into the windows during which a color had no weight."""
        self.exemptions.colors.clear()
        timeline = [(self.started, Traffic.all_on("blue")), *changes]
        for color in COLORS:
            zero_since: float | None = None
            for at, traffic in timeline:
                if traffic.weight(color) == 0 and zero_since is None:
                    zero_since = at
                elif traffic.weight(color) > 0 and zero_since is not None:
                    self.exemptions.colors[color].append((zero_since, at))
                    zero_since = None
            if zero_since is not None:
                self.exemptions.colors[color].append((zero_since, FOREVER))

    def _traffic_follow(self, changes: list[tuple[float, Traffic]], load: LoadResult) -> list[dict[str, Any]]:
        """Per weight change: how soon the new color answered, and the old one stopped."""
        follow = []
        previous = Traffic.all_on("blue")
        answered = sorted((a.at, a.served_by.split("/")[0]) for a in load.attempts if a.served_by)
        ends = [at for at, _ in changes[1:]] + [FOREVER] * bool(changes)
        for (at, traffic), until in zip(changes, ends, strict=True):
            entry: dict[str, Any] = {"to": {"blue": traffic.blue, "green": traffic.green}}
            for color in COLORS:
                color_name: Color = color
                if previous.weight(color_name) == 0 and traffic.weight(color_name) > 0:
                    first = next((t for t, c in answered if at <= t < until and c == color), None)
                    entry[f"first_{color}_response_s"] = round(first - at, 3) if first else None
                if previous.weight(color_name) > 0 and traffic.weight(color_name) == 0:
                    later = [t for t, c in answered if at <= t < until and c == color]
                    entry[f"last_{color}_response_s"] = round(later[-1] - at, 3) if later else 0.0
            follow.append(entry)
            previous = traffic
        return follow


def _operation(result: Result) -> dict[str, Any]:
    return {
        "outcome": result.state.value,
        "seconds": round(result.seconds, 2),
        "reason": result.reason,
        "steps": result.steps,
    }


def _wait_ready(port: int, timeout: float = 20.0) -> None:
    probe = HttpProbe(f"http://127.0.0.1:{port}/health/ready")
    wait_until(probe, timeout, what=f"ledger on port {port} ready ({probe.url})")
