"""`cutover rehearse --faults` on the AWS path: each fault under the live load, one line each.

Every scenario measures the requests and failures of its own window, says what happened
(`outcome`) against what should (`expected`, `as_expected`), and leaves the stack in its
baseline for the next one: blue 100 / green 0 in Route53, green not running, lock free.

1. sigterm_pod: one blue instance drains (SIGTERM); nothing may fail.
2. sigkill_pod: one blue instance dies; its requests in flight may fail, clients retry.
3. postgres_restart: readiness dips, clients retry, nothing acknowledged is lost.
4. broken_release: green never becomes ready; the release fails, traffic stays on blue.
5. ci_cancel: `cutover release` as CI runs it, cancelled (SIGINT) while baking: exit 130
   within GitHub's 7.5 s SIGINT->SIGTERM window, traffic restored, lock free, recorded.
6. out_of_band_writer: a human edits the weights in the console mid-release: the release's
   compare-and-swap refuses, nothing is overwritten, on-call rolls back.
7. route53_unavailable: the Route53/DynamoDB API goes away for a few seconds mid-release
   (DNS keeps answering): the release ends in one known state.
8. credentials_rotated: ledger_app's password rotated in the database, then in the file
   the colors read it from: no request fails.
9. bad_canary: a build that is ready but answers 5xx on transfers, stopped by the canary
   analysis on CloudWatch metrics (published from the ALBs' access logs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from cutover.adapters.cloudwatch_metrics import ERRORS as TARGET_5XX
from cutover.adapters.cloudwatch_metrics import NAMESPACE as ALB_NAMESPACE
from cutover.adapters.cloudwatch_metrics import REQUESTS, load_balancer_dimension, target_group_dimension
from cutover.local.aws import REGION, edit_weights_in_console
from cutover.local.database import migrate_database, query
from cutover.local.process import PipeLines
from cutover.machine import Gates, ReleaseMachine, Reporter, Result, State
from cutover.model import COLORS, Color, Traffic
from cutover.rehearsal.aws_stack import BROKEN_IMAGE, AwsStack
from cutover.rehearsal.load import LoadGenerator
from cutover.rehearsal.rehearse import FOREVER

if TYPE_CHECKING:
    from cutover.rehearsal.aws_path import AwsRehearsal

APP_ROLE = "ledger_app"  # the least-privilege role (migration 0003) the colors log in as
GITHUB_SIGTERM_AFTER = 7.5  # GitHub's runner: SIGINT, 7.5 s, SIGTERM, 2.5 s, SIGKILL
GITHUB_SIGKILL_AFTER = 10.0
REFUSED_LOGIN_LOG = "database refused the login"
CONSOLE_WEIGHTS: dict[Color, int] = {"blue": 70, "green": 30}
OUTAGE_SECONDS = 3.0
MAX_GAP_SECONDS = 1.0  # the longest a rotation leaves the database and the file disagreeing
BAD_IMAGE = "v4-bad-schema"  # ready, but its database has no `transfers` table: POST /transfers is a 500
ACCOUNT_ID = "123456789012"
# The canary analysis of the bad_canary scenario (CloudWatch, as on AWS; windows scaled down).
CANARY_ANALYSIS = {
    "type": "cloudwatch",
    "window_seconds": 60,
    "min_requests": 20,
    "max_error_rate_increase": 0.05,
    "lag_seconds": 1,
}


# ------------------------------------------------------------------ stack set-up


def password_file(stack: AwsStack) -> Path:
    return stack.workdir / "secrets" / "database-password"


def prepare_stack(stack: AwsStack) -> None:
    """Before the colors start: they log in as ledger_app, whose password Postgres checks
    (scram-sha-256) and which they read from a file for every new connection
    (DATABASE_AUTH=password-file, as from a mounted Secret), so it can be rotated under load."""
    postgres = stack.postgres
    hba = Path(postgres.psql("SHOW hba_file").strip())
    hba.write_text(f"host all {APP_ROLE} {postgres.host}/32 scram-sha-256\n" + hba.read_text())
    postgres.psql("SELECT pg_reload_conf()")
    _rotate_in_database(stack, "rehearsal-password-1")
    _write_atomically(password_file(stack), "rehearsal-password-1")
    stack.app_env.update(
        {
            "DATABASE_URL": stack.database_url.replace(
                "postgresql://postgres@", f"postgresql://{APP_ROLE}@", 1
            ),
            "DATABASE_AUTH": "password-file",
            "DATABASE_PASSWORD_FILE": str(password_file(stack)),
            # Pooled connections are replaced often, so new logins happen during a rotation.
            "DB_POOL_MAX_QUERIES": "50",
        }
    )


def _rotate_in_database(stack: AwsStack, password: str) -> None:
    stack.postgres.psql(f"ALTER ROLE {APP_ROLE} PASSWORD '{password}'", database="ledger")


def _write_atomically(path: Path, text: str) -> None:
    """As the kubelet updates a mounted Secret: the new content appears at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text + "\n")
    os.replace(fresh, path)


# ------------------------------------------------------------------ the run


def run_faults(
    rehearsal: AwsRehearsal, stack: AwsStack, load: LoadGenerator, gates: Gates
) -> list[dict[str, Any]]:
    """Every scenario in turn; one line (dict) per scenario."""
    faults = _Faults(rehearsal, stack, load, gates)
    scenarios = (
        faults.sigterm_pod,
        faults.sigkill_pod,
        faults.postgres_restart,
        faults.broken_release,
        faults.ci_cancel,
        faults.out_of_band_writer,
        faults.route53_unavailable,
        faults.credentials_rotated,
        faults.bad_canary,
    )
    lines: list[dict[str, Any]] = []
    for scenario in scenarios:
        if lines and "error" in lines[-1]:  # the stack may not be in its baseline: stop here
            lines.append(_not_run(scenario.__name__, "an earlier scenario raised"))
            continue
        start = time.monotonic()
        try:
            lines.append(scenario())
        except Exception as exc:
            rehearsal.say(f"fault scenario {scenario.__name__} raised {type(exc).__name__}: {exc}")
            lines.append(
                _not_run(scenario.__name__, f"{type(exc).__name__}: {exc}", time.monotonic() - start)
            )
    return lines


def _not_run(scenario: str, error: str, seconds: float = 0.0) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "seconds": round(seconds, 2),
        "requests": 0,
        "failed_requests": 0,
        "outcome": f"did not finish: {error}",
        "expected": "the scenario runs to its end",
        "as_expected": False,
        "error": error,
        # what _report reads of these two scenarios
        "rolled_back_as_expected": False,
    }


class _Watch(Reporter):
    """Passes progress on, and tells when the machine has entered a state."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.entered: dict[State, threading.Event] = {}

    def event(self, state: State) -> threading.Event:
        return self.entered.setdefault(state, threading.Event())

    def state(self, state: State, detail: str = "") -> None:
        self.inner.state(state, detail)
        self.event(state).set()

    def note(self, message: str) -> None:
        self.inner.note(message)


@dataclass
class _InThread:
    """An operation running in a thread of its own (so a fault can strike mid-way)."""

    thread: threading.Thread
    result: list[Result]

    @classmethod
    def start(cls, operation: Callable[[], Result]) -> _InThread:
        result: list[Result] = []
        thread = threading.Thread(
            target=lambda: result.append(operation()), name="fault-release", daemon=True
        )
        thread.start()
        return cls(thread, result)

    def wait(self, timeout: float) -> Result:
        self.thread.join(timeout)
        if not self.result:
            raise RuntimeError(f"the operation did not end within {timeout:g}s")
        return self.result[0]


class _Faults:
    def __init__(self, rehearsal: AwsRehearsal, stack: AwsStack, load: LoadGenerator, gates: Gates) -> None:
        assert stack.deployer is not None
        self.rehearsal = rehearsal
        self.stack = stack
        self.deployer = stack.deployer
        self.load = load
        self.gates = gates
        self.say = rehearsal.say
        self._last_end: float | None = None

    # -------------------------------------------------------------- helpers

    def machine(self, gates: Gates | None = None, reporter: Reporter | None = None) -> ReleaseMachine:
        return self.stack.machine(gates or self.gates, reporter or self.rehearsal.reporter, time.monotonic)

    def begin(self) -> float:
        """A scenario's window starts where the previous one's ended: every request of the
        fault run belongs to one line (a late effect counts against the scenario before)."""
        return self._last_end if self._last_end is not None else time.monotonic()

    def line(
        self,
        scenario: str,
        start: float,
        *,
        expected: str,
        outcome: str,
        as_expected: bool,
        **extra: Any,
    ) -> dict[str, Any]:
        """The scenario's line: checks the baseline, then counts the window's requests and
        failures (from `start` to now, the baseline check included)."""
        baseline = self.baseline()
        end = self._last_end = time.monotonic()
        attempts = [a for a in list(self.load.result.attempts) if start <= a.at < end]
        failed = [a for a in attempts if a.status is None or a.status >= 500]
        self.rehearsal._fault_windows.append((start, end))
        return {
            "scenario": scenario,
            "seconds": round(end - start, 2),
            "requests": len(attempts),
            "failed_requests": len(failed),
            "outcome": outcome,
            "expected": expected,
            "as_expected": bool(as_expected) and not baseline,
            **extra,
            "baseline_after": baseline or "ok",
            **({"failed_examples": [a.describe(start) for a in failed[:5]]} if failed else {}),
        }

    def baseline(self) -> list[str]:
        """What differs from the baseline (blue 100 serving, green not running, lock free)."""
        wrong = []
        machine = self.machine()
        traffic = machine.router.read()
        if not traffic.same_weights(Traffic.all_on("blue")):
            wrong.append(f"traffic is {traffic}")
        if self.deployer.pids("green"):
            wrong.append(f"green is running: pids {self.deployer.pids('green')}")
        if len(self.deployer.pids("blue")) != self.stack.pods:
            wrong.append(f"blue runs {len(self.deployer.pids('blue'))} of {self.stack.pods} instances")
        holder = machine.lock.holder()
        if holder is not None and not holder.get("expired"):
            wrong.append(f"the lock is held: {holder}")
        return wrong

    def served_by(self, color: Color, start: float, end: float) -> int:
        return sum(
            1
            for a in list(self.load.result.attempts)
            if start <= a.at < end and a.served_by.startswith(f"{color}/")
        )

    def restart_blue(self, index: int) -> None:
        self.deployer.start_instance("blue", index)
        self.stack.pids_seen.add(self.deployer.instance_pid("blue", index))
        _wait_ready(self.stack.ports["blue"][index])
        self.stack.balancers["blue"].wait_healthy(self.stack.ports["blue"])

    def back_to_blue(self, machine: ReleaseMachine) -> dict[str, Any]:
        """On-call: `cutover rollback` (if traffic is not all on blue), then `cutover retire
        green --wait` (once its cached DNS answers have expired and its traffic stopped)."""
        rollback: Result | None = None
        if not machine.router.read().same_weights(Traffic.all_on("blue")):
            rollback = self.machine().rollback()
        self.stack.pids_seen.update(self.deployer.pids("green"))
        retire = self.rehearsal._retire(self.stack, self.machine(), "green", self.load)
        return {
            "rollback": rollback.state.value if rollback else "not needed",
            "retire": retire["outcome"],
            "retire_waited_seconds": retire["waited_seconds"],
        }

    # -------------------------------------------------------------- pods and Postgres

    def sigterm_pod(self) -> dict[str, Any]:
        self.say("fault: SIGTERM blue-0 mid-load (graceful drain)")
        pid = self.deployer.instance_pid("blue", 0)
        start = self.begin()
        self.rehearsal.exemptions.instances["blue/blue-0"].append((start, FOREVER))
        os.kill(pid, signal.SIGTERM)
        exited = self.deployer.wait_exit(pid, self.rehearsal.plan.drain_seconds + 12)
        self.restart_blue(0)
        time.sleep(1.0)
        line = self.line(
            "sigterm_pod",
            start,
            expected="blue-0 drains and exits by itself; no request fails",
            outcome=f"blue-0 {'exited gracefully' if exited else 'did NOT exit within its drain'}; restarted",
            as_expected=exited,
            exited_gracefully=exited,
            expect_failed=0,
        )
        line["as_expected"] = line["as_expected"] and line["failed_requests"] == 0
        return line

    def sigkill_pod(self) -> dict[str, Any]:
        self.say("fault: SIGKILL blue-1 mid-load")
        pid = self.deployer.instance_pid("blue", 1)
        start = self.begin()
        self.rehearsal.exemptions.instances["blue/blue-1"].append((start, FOREVER))
        os.kill(pid, signal.SIGKILL)
        died = self.deployer.wait_exit(pid, 5)
        time.sleep(1.0)
        self.restart_blue(1)
        time.sleep(1.0)
        return self.line(
            "sigkill_pod",
            start,
            expected="requests in flight on blue-1 may fail (the ALB answers 502); clients retry "
            "with their idempotency keys; nothing acknowledged is lost",
            outcome=f"blue-1 {'killed' if died else 'still alive'}; restarted and healthy again",
            as_expected=died,
        )

    def postgres_restart(self) -> dict[str, Any]:
        self.say("fault: restart Postgres mid-load")
        start = self.begin()
        self.stack.postgres.stop("fast")
        time.sleep(1.0)
        self.stack.postgres.start()
        for port in self.stack.ports["blue"]:
            _wait_ready(port, timeout=30)
        self.stack.balancers["blue"].wait_healthy(self.stack.ports["blue"])
        time.sleep(1.0)
        end = time.monotonic()
        self.rehearsal.exemptions.everything.append((start, end))
        return self.line(
            "postgres_restart",
            start,
            expected="readiness dips, requests in the gap may fail and are retried; every instance "
            "is ready again; nothing acknowledged is lost",
            outcome="Postgres restarted; every blue instance ready and healthy in its ALB",
            as_expected=True,
        )

    # -------------------------------------------------------------- releases that fail

    def broken_release(self) -> dict[str, Any]:
        self.say(f"fault: release a broken build ({BROKEN_IMAGE}: green never becomes ready)")
        start = self.begin()
        gates = Gates(
            ready_successes=3, ready_interval=0.3, ready_timeout=6, bake_seconds=1, health_interval=0.3,
            sync_timeout=10,
        )  # fmt: skip
        machine = self.machine(gates)
        broken = machine.release(BROKEN_IMAGE, self.rehearsal.plan.strategy, bake=1)
        traffic = machine.router.read()
        end = time.monotonic()
        green_served = self.served_by("green", start, end)
        self.stack.pids_seen.update(self.deployer.pids("green"))
        self.deployer.stop("green")  # it never had weight: no DNS answer names it
        rolled_back = (
            broken.exit_code == 1 and traffic.same_weights(Traffic.all_on("blue")) and green_served == 0
        )
        return self.line(
            "broken_release",
            start,
            expected="the release fails (exit 1) at green's readiness gate; traffic stays blue 100; green serves nothing",
            outcome=f"release {broken.state.value} (exit {broken.exit_code}): {broken.reason}; "
            f"traffic {traffic.blue}/{traffic.green}; green served {green_served}",
            as_expected=rolled_back,
            release_outcome=broken.state.value,
            exit_code=broken.exit_code,
            reason=broken.reason,
            traffic_after={"blue": traffic.blue, "green": traffic.green},
            served_by_green=green_served,
            rolled_back_as_expected=rolled_back,
        )

    # -------------------------------------------------------------- CI cancels the run

    def ci_cancel(self) -> dict[str, Any]:
        """`cutover release` as a GitHub Actions step runs it, and the run is cancelled while
        it bakes: the runner sends SIGINT, SIGTERM 7.5 s later, SIGKILL at 10 s."""
        self.say("fault: CI cancels `cutover release` while it bakes (SIGINT)")
        start = self.begin()
        command = [
            sys.executable, "-m", "cutover", "release", "--image", "v2", "--env", str(self.stack.env_file),
            "--strategy", "canary:10,50,100", "--bake", "60", "--json",
        ]  # fmt: skip
        env = {**self.stack.subprocess_env(), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stderr is not None
        progress = PipeLines(process.stderr)
        output = PipeLines(process.stdout)
        baking = progress.wait_for(lambda lines: any("baking" in line for line in lines), 90, process)
        signals: list[str] = []
        sent_at = time.monotonic()
        if baking:
            process.send_signal(signal.SIGINT)
            signals.append("SIGINT")
        code = _wait_like_github(process, sent_at, signals) if baking else _stop(process, signals)
        exit_seconds = round(time.monotonic() - sent_at, 2)
        self.stack.pids_seen.update(self.deployer.pids("green"))
        machine = self.machine()
        traffic = machine.router.read()
        holder = machine.lock.holder()
        lock_free = holder is None or bool(holder.get("expired"))
        recorded = next((r for r in machine.history.recent(10) if r.operation == "release"), None)
        history = f"{recorded.operation} {recorded.image} {recorded.outcome}" if recorded else "nothing"
        on_baseline = traffic.same_weights(Traffic.all_on("blue"))
        after = self.back_to_blue(machine)
        result = _last_json(output.text())
        ok = (
            baking
            and code == 130
            and exit_seconds <= GITHUB_SIGTERM_AFTER
            and on_baseline
            and lock_free
            and recorded is not None
            and recorded.outcome == "cancelled"
        )
        return self.line(
            "ci_cancel",
            start,
            expected=f"exit 130 within {GITHUB_SIGTERM_AFTER:g}s of SIGINT; traffic read back blue 100; "
            "lock free; history records the release as cancelled",
            outcome=f"exit {code} {exit_seconds}s after {'+'.join(signals) or 'no signal'} "
            f"({result.get('reason', '') if result else 'no JSON'}); traffic {traffic.blue}/{traffic.green}; "
            f"lock {'free' if lock_free else 'HELD'}; history: {history}",
            as_expected=ok,
            exit_code=code,
            exit_seconds_after_sigint=exit_seconds,
            signals=signals,
            traffic_after={"blue": traffic.blue, "green": traffic.green},
            lock_free=lock_free,
            history=history,
            then=after,
            **({} if baking else {"stderr_tail": progress.text()[-2000:]}),
        )

    # -------------------------------------------------------------- someone else changes traffic

    def out_of_band_writer(self) -> dict[str, Any]:
        self.say(
            f"fault: a human sets blue {CONSOLE_WEIGHTS['blue']} / green {CONSOLE_WEIGHTS['green']} "
            "in the Route53 console while a release bakes"
        )
        start = self.begin()
        watch = _Watch(self.rehearsal.reporter)
        machine = self.machine(reporter=watch)
        release = _InThread.start(lambda: machine.release("v2", self.rehearsal.plan.strategy, bake=3))
        baking = watch.event(State.BAKING).wait(60)
        if baking:
            edit_weights_in_console(
                self.stack.aws.client("route53"),
                self.stack.zone_id,
                self.stack.zone.record_name,
                CONSOLE_WEIGHTS,
            )
        result = release.wait(120)
        self.stack.pids_seen.update(self.deployer.pids("green"))
        after_release = self.machine().router.read()
        kept = after_release.same_weights(Traffic(CONSOLE_WEIGHTS["blue"], CONSOLE_WEIGHTS["green"]))
        self.say("on-call: cutover rollback, then cutover retire green --wait")
        after = self.back_to_blue(self.machine())
        ok = baking and result.exit_code == 4 and kept and after["rollback"] == "succeeded"
        return self.line(
            "out_of_band_writer",
            start,
            expected="the release's next compare-and-swap refuses; it ends exit 4 without overwriting "
            "the console's weights; on-call's `cutover rollback` then restores blue 100",
            outcome=f"release {result.state.value} (exit {result.exit_code}); weights right after: "
            f"{after_release.blue}/{after_release.green} ({'kept' if kept else 'OVERWRITTEN'}); "
            f"rollback {after['rollback']}, retire {after['retire']}",
            as_expected=ok,
            exit_code=result.exit_code,
            release_outcome=result.state.value,
            reason=result.reason,
            weights_after_release={"blue": after_release.blue, "green": after_release.green},
            console_weights_kept=kept,
            on_call="traffic is where the human put it and cutover did not overwrite it: agree with "
            "whoever edited it, then `cutover rollback` (all traffic on the last known good, blue v1) "
            "and `cutover retire green --wait`",
            then=after,
        )

    def route53_unavailable(self) -> dict[str, Any]:
        self.say(
            f"fault: the Route53/DynamoDB API is unreachable for {OUTAGE_SECONDS:g}s while a release bakes"
        )
        start = self.begin()
        watch = _Watch(self.rehearsal.reporter)
        machine = self.machine(reporter=watch)
        answers_before = sum(self.stack.dns.answers.values()) if self.stack.dns else 0
        release = _InThread.start(lambda: machine.release("v2", self.rehearsal.plan.strategy, bake=2))
        baking = watch.event(State.BAKING).wait(60)
        outage: tuple[float, float] | None = None
        if baking:
            down = time.monotonic()
            self.stack.aws.stop()
            time.sleep(OUTAGE_SECONDS)
            self.stack.aws.start()
            outage = (down, time.monotonic())
        result = release.wait(120)
        self.stack.pids_seen.update(self.deployer.pids("green"))
        live = self.machine().router.read()
        answered_during = self._dns_answers_during(outage)
        end_state = {
            0: "succeeded after retries",
            1: "failed, traffic restored",
            4: "failed, traffic NOT restored",
        }.get(result.exit_code, result.state.value)
        on_call = {
            0: "nothing: the release finished; roll back with `cutover rollback` if wanted",
            1: "nothing urgent: traffic is back where it was; release again when the API is back",
            4: "act now: `cutover rollback` once the API answers (the last line of the output says so)",
        }.get(result.exit_code, "read the output")
        after = self.back_to_blue(self.machine())
        known = (
            (result.exit_code == 0 and live.same_weights(Traffic.all_on("green")))
            or (result.exit_code == 1 and live.same_weights(Traffic.all_on("blue")))
            or result.exit_code == 4
        )
        return self.line(
            "route53_unavailable",
            start,
            expected="the release ends in one known state: succeeded after retries (within the 20 s call "
            "budget), or failed with traffic restored (exit 1), or exit 4 with the command to run; DNS keeps answering",
            outcome=f"API down {OUTAGE_SECONDS:g}s while baking; release {end_state} (exit {result.exit_code}) "
            f"{result.reason}; traffic read back {live.blue}/{live.green}; DNS answered {answered_during} "
            "queries during the outage",
            as_expected=baking and known and answered_during > 0 and after["retire"] == "retired",
            exit_code=result.exit_code,
            end_state=end_state,
            traffic_after_release={"blue": live.blue, "green": live.green},
            dns_answers_during_outage=answered_during,
            # When each step's change was sent, from the outage's start: a step due during the
            # outage (bake 2 s < outage) went through only once the API answered again.
            steps_at_from_outage_start_s=[round(st["at"] - outage[0], 2) for st in result.steps]
            if outage
            else [],
            outage_seconds=round(outage[1] - outage[0], 2) if outage else 0.0,
            dns_answers_before=answers_before,
            on_call=on_call,
            then=after,
        )

    def _dns_answers_during(self, outage: tuple[float, float] | None) -> int:
        """Load attempts that resolved the name during the outage (DNS's data plane stayed up)."""
        if outage is None:
            return 0
        return sum(1 for a in list(self.load.result.attempts) if outage[0] <= a.at < outage[1] and a.address)

    # -------------------------------------------------------------- credentials

    def credentials_rotated(self) -> dict[str, Any]:
        """Both orders, as a rotation goes: the database first (new logins with the file's
        old password are refused until the file catches up), then the file first. Each gap
        lasts until a refused login is seen (at most MAX_GAP_SECONDS, under the app's 2 s
        pool-acquire timeout: a longer gap is more than ledger promises to absorb)."""
        self.say(f"fault: rotate {APP_ROLE}'s password mid-load (database first, then the file first)")
        start = self.begin()
        refused_before = self._refused_logins()
        url = self.stack.database_url
        rotated_at = query(url, "SELECT now() AS now")[0]["now"]
        gaps = {
            "database first": self._gap(
                lambda: _rotate_in_database(self.stack, "rehearsal-password-2"),
                lambda: _write_atomically(password_file(self.stack), "rehearsal-password-2"),
            ),
        }
        time.sleep(1.0)
        gaps["file first"] = self._gap(
            lambda: _write_atomically(password_file(self.stack), "rehearsal-password-3"),
            lambda: _rotate_in_database(self.stack, "rehearsal-password-3"),
        )
        time.sleep(1.0)
        new_logins = int(
            query(
                url,
                "SELECT count(*) AS n FROM pg_stat_activity WHERE usename = $1 AND backend_start > $2",
                APP_ROLE,
                rotated_at,
            )[0]["n"]
        )
        refused = self._refused_logins() - refused_before
        line = self.line(
            "credentials_rotated",
            start,
            expected="no request fails: a refused login is retried with the password read again from the file",
            outcome=f"rotated twice; {new_logins} open connections logged in since; {refused} refused logins "
            "retried; gaps: " + ", ".join(f"{k} {v['seconds']}s" for k, v in gaps.items()),
            as_expected=new_logins > 0,
            new_logins_after_rotation=new_logins,
            logins_refused_and_retried=refused,
            gaps=gaps,
        )
        line["as_expected"] = line["as_expected"] and line["failed_requests"] == 0
        return line

    def _gap(self, first: Callable[[], None], then: Callable[[], None]) -> dict[str, Any]:
        """`first`, then `then` once a login has been refused (or MAX_GAP_SECONDS passed)."""
        seen = self._refused_logins()
        began = time.monotonic()
        first()
        refused = False
        while time.monotonic() - began < MAX_GAP_SECONDS:
            if self._refused_logins() > seen:
                refused = True
                break
            time.sleep(0.05)
        then()
        return {"seconds": round(time.monotonic() - began, 2), "login_refused_in_gap": refused}

    # -------------------------------------------------------------- a bad build, caught on metrics

    def bad_canary(self) -> dict[str, Any]:
        self.say(
            f"fault: release {BAD_IMAGE} (ready, but POST /transfers is a 500), canary analysis on CloudWatch"
        )
        start = self.begin()
        self._bad_database()
        publisher = AlbMetricsPublisher(
            self.stack.aws.client("cloudwatch"),
            {c: self.stack.access_log(c) for c in COLORS},  # ledger's requests on each ALB
            {c: alb_arns(c) for c in COLORS},
        )
        publisher.start()
        try:
            self._write_env_file_with_analysis()
            _wait_until(lambda: publisher.published["blue"]["requests"] >= 50, timeout=30)
            machine = self.machine()
            result = machine.release(BAD_IMAGE, self.rehearsal.plan.strategy, bake=20)
            traffic = machine.router.read()
        finally:
            publisher.stop()
            self.stack.write_env_file()  # back to health gates only
        released_at = time.monotonic()
        self.stack.pids_seen.update(self.deployer.pids("green"))
        green_served = self.served_by("green", start, released_at)
        green_5xx = sum(
            1
            for a in list(self.load.result.attempts)
            if start <= a.at < released_at and a.served_by.startswith("green/") and (a.status or 0) >= 500
        )
        after = self.back_to_blue(machine)
        caught = result.reason.startswith("canary analysis:")
        ok = (
            result.exit_code == 1
            and caught
            and traffic.same_weights(Traffic.all_on("blue"))
            and green_served > 0
            and after["retire"] == "retired"
        )
        return self.line(
            "bad_canary",
            start,
            expected="green gets its canary share and answers 5xx on transfers (clients retry them on blue); "
            "the CloudWatch analysis fails the bake: exit 1, traffic restored to blue 100",
            outcome=f"release {result.state.value} (exit {result.exit_code}): {result.reason}; "
            f"traffic {traffic.blue}/{traffic.green}; green served {green_served} ({green_5xx} 5xx)",
            as_expected=ok,
            exit_code=result.exit_code,
            release_outcome=result.state.value,
            reason=result.reason,
            stopped_by_analysis=caught,
            release_seconds=round(result.seconds, 2),
            served_by_green=green_served,
            green_5xx=green_5xx,
            published=publisher.published,
            then=after,
        )

    def _bad_database(self) -> None:
        """The bad build's database: migrated, then without `transfers` (a migration it
        expects never ran)."""
        url = self.stack.postgres.create_database("ledger_bad")
        migrate_database(url)
        self.stack.postgres.psql("DROP TABLE transfers CASCADE", database="ledger_bad")
        self.stack.image_env[BAD_IMAGE] = {"DATABASE_URL": url, "DATABASE_AUTH": "url"}

    def _write_env_file_with_analysis(self) -> None:
        """The environment file, plus CloudWatch canary analysis and each color's ALB ARNs."""
        path = self.stack.write_env_file()
        spec = json.loads(path.read_text())
        spec["analysis"] = dict(CANARY_ANALYSIS)
        for color in COLORS:
            lb, tg = alb_arns(color)
            spec["colors"][color].update(load_balancer_arn=lb, target_group_arn=tg)
        path.write_text(json.dumps(spec, indent=2))

    def _refused_logins(self) -> int:
        logs = sorted((self.stack.workdir / "colors").glob("blue-*.log"))
        return sum(path.read_text(errors="replace").count(REFUSED_LOGIN_LOG) for path in logs)


class AlbMetricsPublisher:
    """What AWS does with each ALB's traffic: `RequestCount` and `HTTPCode_Target_5XX_Count`
    (5xx its targets answered, not the ALB's own) per LoadBalancer and TargetGroup in
    CloudWatch's `AWS/ApplicationELB`, here every `interval` seconds from the ALB's access
    log (only what is logged after `start`; no datapoint for a zero count, as ALBs do)."""

    def __init__(
        self, client: Any, logs: dict[Color, Path], arns: dict[Color, tuple[str, str]], interval: float = 1.0
    ) -> None:
        self.client, self.logs, self.arns, self.interval = client, logs, arns, interval
        self.published: dict[Color, dict[str, int]] = {c: {"requests": 0, "target_5xx": 0} for c in logs}
        self._offsets: dict[Color, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alb-metrics", daemon=True)

    def start(self) -> None:
        self._offsets = {c: path.stat().st_size if path.exists() else 0 for c, path in self.logs.items()}
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for color in self.logs:
                with contextlib.suppress(Exception):  # a missed second shows as fewer requests
                    self._publish(color)

    def _publish(self, color: Color) -> None:
        requests, errors = self._read(color)
        metrics = [(REQUESTS, requests), (TARGET_5XX, errors)]
        lb, tg = self.arns[color]
        dimensions = [
            {"Name": "LoadBalancer", "Value": load_balancer_dimension(lb)},
            {"Name": "TargetGroup", "Value": target_group_dimension(tg)},
        ]
        data = [
            {"MetricName": name, "Dimensions": dimensions, "Value": float(value), "Unit": "Count"}
            for name, value in metrics
            if value > 0
        ]
        if data:
            self.client.put_metric_data(Namespace=ALB_NAMESPACE, MetricData=data)
        self.published[color]["requests"] += requests
        self.published[color]["target_5xx"] += errors

    def _read(self, color: Color) -> tuple[int, int]:
        """Requests and target 5xx in the log lines completed since the last read."""
        with self.logs[color].open("rb") as log:
            log.seek(self._offsets[color])
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offsets[color] += len(complete)
        requests = errors = 0
        for raw in complete.splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            requests += 1
            upstream = entry.get("upstream_host")
            if int(entry.get("status") or 0) >= 500 and upstream and upstream != "-":
                errors += 1
        return requests, errors


def alb_arns(color: Color) -> tuple[str, str]:
    """The load balancer's and the target group's ARNs of `color` (as the Pulumi program exports)."""
    prefix = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT_ID}"
    ident = "0123456789abcdef" if color == "blue" else "fedcba9876543210"
    return f"{prefix}:loadbalancer/app/ledger-{color}/{ident}", f"{prefix}:targetgroup/ledger-{color}/{ident}"


# ------------------------------------------------------------------ processes


def _wait_like_github(process: subprocess.Popen[str], sigint_at: float, signals: list[str]) -> int:
    """Wait as GitHub's runner does after SIGINT: SIGTERM at 7.5 s, SIGKILL at 10 s."""
    try:
        return process.wait(max(0.0, sigint_at + GITHUB_SIGTERM_AFTER - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        signals.append("SIGTERM")
    try:
        return process.wait(max(0.0, sigint_at + GITHUB_SIGKILL_AFTER - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        signals.append("SIGKILL")
        return process.wait()


def _stop(process: subprocess.Popen[str], signals: list[str]) -> int:
    """The process never reached the bake: stop it (it restores what it changed)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        signals.append("SIGINT (never baked)")
    return _wait_like_github(process, time.monotonic(), signals)


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"condition not met within {timeout:g}s")
        time.sleep(0.1)


def _wait_ready(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"ledger on port {port} did not become ready within {timeout:g}s")
