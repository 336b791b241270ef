"""The `cutover` command: status, release, shift, rollback, retire, history, rehearse.

Exit codes (docs/contracts.md): 0 done (also "nothing to do"); 1 the operation failed and
traffic is back where it was; 2 bad input or refused, nothing changed; 3 another operation
holds the lock; 4 the operation failed and traffic could NOT be restored (act now: the
last line says what to run); 130/143 cancelled by SIGINT/SIGTERM, traffic restored.
With `--json`, every exit path prints one JSON object on stdout; without it, the last line
on stderr says what to run next whenever there is something to do.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from cutover import envconfig
from cutover.adapters.http_health import HttpHealth
from cutover.build import (
    build_history,
    build_lock,
    build_machine,
    build_retire_parts,
    build_router,
    build_state_store,
)
from cutover.cancel import Cancelled, CancelScope
from cutover.machine import Refused, ReleaseMachine, Reporter, Result, State
from cutover.model import COLORS, BadInput, Traffic, parse_color, parse_strategy
from cutover.ports import LockHeld, Record
from cutover.release_state import ReleaseState, adopt, rollback_target

EXAMPLES = """\b
Examples:
  cutover status   --env prod
  cutover release  --env prod --image v1.4.2 --strategy canary:10,50,pause,100 --bake 120
  cutover release  --env prod --image v1.4.2 --dry-run
  cutover promote  --env prod      (from another shell: go on past `pause`)
  cutover rollback --env prod      (all traffic to the last known good, one atomic change)
  cutover retire   --env prod --wait   (stop the old color once no request reaches it)
  cutover history  --env prod --json

\b
Exit codes: 0 done; 1 failed, traffic restored; 2 refused, nothing changed; 3 locked;
4 failed, traffic NOT restored (act now); 130/143 cancelled, traffic restored."""

app = typer.Typer(
    name="cutover",
    help="Blue/green releases: release, shift, rollback, and see where traffic is.",
    epilog=EXAMPLES,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"cutover {version('cutover')}")
        except PackageNotFoundError:
            print("cutover (not installed)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Blue/green releases: release, shift, rollback, and see where traffic is."""


err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EnvOption = Annotated[
    str,
    typer.Option(
        "--env", envvar="CUTOVER_ENV", help="environment name or file (see docs/runbooks/release.md)"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]

MAX_BAKE_SECONDS = 86_400  # a day: longer is a mistake, and holds the lock as long


def emit_json(document: Any) -> None:
    """One JSON document on one line of stdout (a stream of them with `status --watch`)."""
    out.print(json.dumps(document), markup=False, soft_wrap=True, highlight=False)


# Set by a command once it knows them, for the lines main() prints on every exit path.
_context: dict[str, str] = {"command": "", "env": ""}


class ConsoleReporter(Reporter):
    """Progress on stderr: every state the machine enters, and notes within it."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def state(self, state: State, detail: str = "") -> None:
        style = {
            "succeeded": "bold green",
            "failed": "bold red",
            "failed, traffic not restored": "bold red",
            "cancelled": "bold yellow",
            "refused": "bold yellow",
            "locked": "bold yellow",
        }
        err.print(
            f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] [{style.get(state.value, 'bold')}]{state.value}[/]"
            + (f"  {escape(detail)}" if detail else "")
        )

    def note(self, message: str) -> None:
        err.print(f"[dim]{time.monotonic() - self.started:6.1f}s    {escape(message)}[/dim]")


def _machine(
    env: str, *, with_deployer: bool, cancel: CancelScope, with_analysis: bool | None = None
) -> ReleaseMachine:
    """The machine for `env`, after a read of the traffic records: an environment whose
    records are missing is refused here, before any progress output or lock."""
    config = envconfig.load(env)
    reporter = ConsoleReporter()
    router = build_router(config, reporter.note)
    router.read()
    return build_machine(
        config, reporter, router, with_deployer=with_deployer, with_analysis=with_analysis, cancel=cancel
    )


def _env_flag() -> str:
    return f"--env {shlex.quote(_context['env'])}" if _context["env"] else "--env ENV"


def next_step(result: Result) -> str:
    """The line that tells on-call (or the pipeline log) what to run now."""
    env = _env_flag()
    if result.state == State.LOCKED:
        return (
            f"next: wait for it and check `cutover status {env}`; if its process is dead, "
            f"`cutover rollback --break-lock {env}`"
        )
    if result.state == State.UNRESTORED:
        where = f"traffic is at {result.after}" if result.after else "traffic could not be read"
        return (
            f"ACT NOW: {where}, not where the {result.operation} started ({result.before}). "
            f"Check `cutover status {env}`, then run `cutover rollback {env}` to put all traffic on the last known good"
        )
    if result.state in (State.FAILED, State.CANCELLED):
        back = f"traffic is back at {result.after}" if result.after else "no traffic was moved"
        if result.operation == "release":
            return f"next: {back}; see `cutover history {env}`, then release a fixed build with `cutover release --image TAG {env}`"
        return f"next: {back}; see `cutover status {env}`"
    return ""


def _finish(result: Result, as_json: bool) -> None:
    _scope.settle()  # the outcome is decided: a signal now must not change the exit code
    if as_json:
        emit_json({**result.as_dict(), "next": next_step(result)})
    for warning in result.warnings:
        err.print(f"cutover: warning: {warning}", markup=False)
    if result.exit_code == 0:
        done = result.reason or f"{result.operation} succeeded in {result.seconds:.1f}s: {result.after}"
        err.print(f"cutover: {done}", markup=False)
    else:
        err.print(f"cutover: {result.operation} {result.state.value}: {result.reason}", markup=False)
        if next_step(result):
            err.print(f"cutover: {next_step(result)}", markup=False)
    raise typer.Exit(result.exit_code)


_scope = CancelScope()  # replaced by main() with the one the entry point installed


def _operation(command: str, env: str) -> CancelScope:
    """Note what runs (for main's messages); SIGINT/SIGTERM are already a clean cancel."""
    _context.update(command=command, env=env)
    _scope.install()
    return _scope


@app.command()
def release(
    env: EnvOption,
    image: Annotated[
        str | None, typer.Option("--image", help="image tag to release (with --resume: optional)")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="all-at-once | canary:10,50,100 (the default) | canary:10,50,pause,100 | linear:25; "
            "--resume runs the interrupted release's own"
        ),
    ] = None,
    bake: Annotated[float | None, typer.Option(help="seconds to bake after each partial step")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="finish the interrupted release (its own image and color)")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="print the plan (colors, image, steps, gates) and change nothing"),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Deploy IMAGE to the idle color and move traffic to it, step by step."""
    _context.update(command="release", env=env)
    steps = parse_strategy(strategy) if strategy is not None else None
    if image is None and not resume:
        raise BadInput("Missing option '--image': name the image tag to release")
    if image is not None and not image.strip():
        raise BadInput("--image must not be empty")
    if bake is not None and not 0 <= bake <= MAX_BAKE_SECONDS:  # also refuses nan and inf
        raise BadInput(f"--bake must be from 0 to {MAX_BAKE_SECONDS} seconds (got {bake:g})")
    if dry_run:
        machine = _machine(env, with_deployer=False, with_analysis=True, cancel=_scope)
        try:
            plan = machine.plan(image.strip() if image else None, steps, bake=bake, resume=resume)
        except LockHeld as held:
            _scope.settle()
            message = f"the release would be locked out: {held}"
            if as_json:
                emit_json(
                    {
                        "operation": "release",
                        "dry_run": True,
                        "outcome": "locked",
                        "exit_code": 3,
                        "reason": message,
                    }
                )
            err.print(f"cutover: {message}", markup=False)
            raise typer.Exit(3) from None
        _print_plan(plan, as_json)
        return
    cancel = _operation("release", env)
    machine = _machine(env, with_deployer=True, cancel=cancel)
    _finish(machine.release(image.strip() if image else None, steps, bake=bake, resume=resume), as_json)


@app.command()
def shift(
    to: Annotated[str, typer.Option("--to", help="blue or green")],
    weight: Annotated[int, typer.Option("--weight", help="0-100: the share COLOR gets")],
    env: EnvOption,
    as_json: JsonOption = False,
) -> None:
    """Give COLOR a WEIGHT of the traffic, with the same health gates as a release."""
    _context.update(command="shift", env=env)
    color = parse_color(to)
    if not 0 <= weight <= 100:
        raise BadInput(f"--weight must be from 0 to 100 (got {weight})")
    cancel = _operation("shift", env)
    machine = _machine(env, with_deployer=False, cancel=cancel)
    _finish(machine.shift(color, weight), as_json)


@app.command()
def rollback(
    env: EnvOption,
    force: Annotated[
        bool, typer.Option("--force", help="roll back even if the last known good fails its health check")
    ] = False,
    break_lock: Annotated[
        bool, typer.Option("--break-lock", help="take the lock from a stuck operation (recorded in history)")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """All traffic back to the last known good build, in one atomic change."""
    cancel = _operation("rollback", env)
    machine = _machine(env, with_deployer=False, cancel=cancel)
    _finish(machine.rollback(force=force, break_lock=break_lock), as_json)


MAX_SETTLE_SECONDS = 86_400


@app.command()
def retire(
    env: EnvOption,
    color: Annotated[
        str | None,
        typer.Option(
            "--color", help="blue or green (default: the color with weight 0 while the other is live)"
        ),
    ] = None,
    settle: Annotated[
        float | None,
        typer.Option(
            "--settle",
            help="seconds the color must have had no request (default: traffic_meter.settle_seconds, else 30)",
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="wait until retiring is safe (Ctrl-C stops waiting), then retire")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Stop the old color's instances once no request can reach it: weight 0, the DNS TTL
    passed since, and no request for --settle seconds. Not yet safe: refuses (exit 2) and
    says how long to wait, or waits with --wait."""
    _context.update(command="retire", env=env)
    chosen = parse_color(color) if color is not None else None
    if settle is not None and not 0 <= settle <= MAX_SETTLE_SECONDS:  # also refuses nan and inf
        raise BadInput(f"--settle must be from 0 to {MAX_SETTLE_SECONDS} seconds (got {settle:g})")
    meter, policy = build_retire_parts(envconfig.load(env), settle)
    cancel = _operation("retire", env)
    machine = _machine(env, with_deployer=True, with_analysis=False, cancel=cancel)
    _finish(machine.retire(meter, policy, chosen, wait=wait), as_json)


def _print_plan(plan: dict[str, Any], as_json: bool) -> None:
    _scope.settle()
    if as_json:
        emit_json(plan)
        return
    from rich.table import Table

    table = Table(title=f"cutover release --dry-run: {plan['env']} (nothing is changed)")
    table.add_column("step")
    table.add_column("what")
    rows = [
        ("traffic now", f"blue {plan['traffic']['blue']} / green {plan['traffic']['green']}"),
        (
            "image",
            f"{plan['image']} to {plan['to_color']}" + ("" if plan["deploy"] else " (already deployed)"),
        ),
        (
            "gates",
            f"{plan['from_color']} healthy; {plan['to_color']} ready {plan['gates']['ready_successes']}x, smoke checks",
        ),
        ("steps", f"{plan['steps']}, {plan['bake_seconds']:g}s bake after each partial step"),
        ("on failure", f"traffic back to blue {plan['traffic']['blue']} / green {plan['traffic']['green']}"),
        ("rollback goes to", str(plan["rollback_to"] or "nowhere: no known good build")),
    ]
    for step, what in rows:
        table.add_row(step, escape(what))
    out.print(table)


def _record_decision(env: str, decision: str, as_json: bool) -> None:
    """promote / abort: what the release waiting at `pause` does next."""
    from cutover.machine import default_actor
    from cutover.release_state import DecisionTaken, StateConflict, decide

    _context.update(command=decision, env=env)
    config = envconfig.load(env)
    store = build_state_store(config)
    holder = build_lock(config).holder()
    for _attempt in range(3):
        state = store.load()
        inflight = state.release
        if inflight is None or not inflight.paused:
            raise BadInput(
                f"no release is waiting at a `pause` in {config.name}: nothing to {decision} "
                f"(`cutover status {_env_flag()}` shows what runs)"
            )
        if holder is None or holder.get("expired") or holder.get("operation") != "release":
            raise BadInput(
                f"release {inflight.record_id} paused, but no release is running (its lock is "
                f"{'expired' if holder else 'free'}): finish it with `cutover release --resume {_env_flag()}` "
                f"or go back with `cutover rollback {_env_flag()}`"
            )
        try:
            store.save(decide(state, decision, default_actor()))
            break
        except DecisionTaken as taken:
            raise BadInput(f"release {inflight.record_id}: {taken}; the first decision stands") from None
        except StateConflict:
            continue
    else:
        raise BadInput(f"the release state kept changing while recording {decision}: try again")
    interval = config.gates.health_interval
    message = (
        f"{decision} recorded for release {inflight.record_id} ({inflight.image} to {inflight.to_color}); "
        f"it acts on it at its next check (every {interval:g}s)"
    )
    _scope.settle()
    if as_json:
        emit_json(
            {
                "operation": decision,
                "outcome": "recorded",
                "exit_code": 0,
                "release": inflight.record_id,
                "reason": message,
            }
        )
    err.print(f"cutover: {message}", markup=False)


@app.command()
def promote(env: EnvOption, as_json: JsonOption = False) -> None:
    """Let the release waiting at a `pause` step go on to its next weight."""
    _record_decision(env, "promote", as_json)


@app.command()
def abort(env: EnvOption, as_json: JsonOption = False) -> None:
    """Make the release waiting at a `pause` step restore traffic and stop (it exits 1)."""
    _record_decision(env, "abort", as_json)


@app.command()
def status(
    env: EnvOption,
    watch: Annotated[
        float,
        typer.Option(
            "--watch", min=0, max=3600, help="repeat every SECONDS (up to 3600) until Ctrl-C (0: once)"
        ),
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Where traffic is, what each color runs and whether it is healthy; the lock; the last
    operation. Exits 1 when a color that takes traffic is unhealthy. With --watch it repeats
    until Ctrl-C (exit 130, as any cancel), riding out a failed look with one line."""
    _context.update(command="status", env=env)
    config = envconfig.load(env)
    if not watch or not math.isfinite(watch):
        if watch:
            raise BadInput(f"--watch must be a number of seconds up to 3600 (got {watch})")
        raise typer.Exit(_status_once(config, as_json))
    while True:  # Ctrl-C (or SIGTERM) ends it: main() prints the cancel
        if not as_json:
            out.print(f"[dim]{datetime.now(UTC).strftime('%H:%M:%S UTC')}[/dim]")
        try:
            _status_once(config, as_json, settle=False)
        except Exception as exc:  # AWS or a color unreachable for a moment: say so, look again
            if as_json:
                emit_json(
                    {"operation": "status", "outcome": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                )
            err.print(
                f"cutover: status failed this time ({type(exc).__name__}: {exc}); retrying", markup=False
            )
        time.sleep(watch)


def _status_once(config: envconfig.EnvConfig, as_json: bool, *, settle: bool = True) -> int:
    """Print one status report; returns its exit code."""
    traffic = build_router(config).read()
    state = build_state_store(config).load()
    if not state.version:  # what the first operation will record
        state = adopt(state, traffic, {}, time.time())
    health = HttpHealth(config.endpoints, config.smoke_checks, ready_path=config.ready_path)
    lock = build_lock(config).holder()
    recent = build_history(config).recent(1)
    last = recent[0] if recent else None
    colors: dict[str, Any] = {}
    for color in COLORS:
        healthy, why = health.ready(color)
        build = state.build(color)
        colors[color] = {
            "weight": traffic.weight(color),
            "share": round(traffic.share(color), 2),
            "image": build.image,
            "digest": build.digest,
            "verified": build.verified,
            "note": build.note,
            "healthy": healthy,
            "health": why,
            "endpoint": config.endpoints[color],
        }
    serving_healthy = all(info["healthy"] for info in colors.values() if info["weight"] > 0)
    good = rollback_target(state)
    report = {
        "env": config.name,
        "traffic": traffic.as_dict(),
        "active": traffic.active,
        "written_by_cutover": traffic.written_by_cutover,
        "healthy": serving_healthy,
        "colors": colors,
        "last_good": {"color": good.color, "image": good.image} if good else None,
        "release_in_flight": state.as_dict()["release"],
        "lock": lock,
        "last_operation": _record_dict(last),
        "explanation": explain(traffic, state, lock, last),
    }
    if settle:
        _scope.settle()
    if as_json:
        emit_json(report)
    else:
        from rich.table import Table

        table = Table(title=f"cutover status: {config.name}")
        for column in ("color", "traffic", "image", "verified", "health", "endpoint"):
            table.add_column(column)
        for name, info in colors.items():
            mark = "[green]ok[/green]" if info["healthy"] else f"[red]{escape(info['health'])}[/red]"
            table.add_row(
                name,
                _share(info["share"]),
                escape(str(info["image"] or "-")),
                "yes" if info["verified"] else "no",
                mark,
                escape(info["endpoint"]),
            )
        out.print(table)
        out.print(report["explanation"], markup=False)
    return 0 if serving_healthy else 1


def _share(percent: float) -> str:
    return f"{percent:.0f}%" if percent == int(percent) else f"{percent:.2f}%"


def explain(traffic: Traffic, state: ReleaseState, lock: dict[str, Any] | None, last: Record | None) -> str:
    """One paragraph for on-call: what state this is and what to type next."""
    lines = []
    good = rollback_target(state)
    if traffic.active and traffic.written_by_cutover:
        lines.append(f"All traffic is on {traffic.active}.")
    elif traffic.written_by_cutover:
        lines.append(f"Traffic is split: blue {traffic.blue}%, green {traffic.green}%.")
    else:
        lines.append(
            f"The weights (blue {traffic.blue}, green {traffic.green}: {_share(traffic.share('blue'))} / "
            f"{_share(traffic.share('green'))}) were not written by cutover: someone edited them by hand."
        )
    if good is not None:
        where = "traffic is there" if traffic.active == good.color else "`cutover rollback` goes there"
        lines.append(f"Last known good: {good} ({where}).")
    else:
        lines.append("No known good build is recorded: `cutover rollback` has nowhere to go.")
    inflight = state.release
    if last is not None:
        when = datetime.fromtimestamp(last.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        what = f"Last operation: {last.operation} {last.id} by {last.actor} at {when}"
        if last.outcome == "running":
            lines.append(f"{what} did not finish (it is running, or its process died).")
        else:
            lines.append(f"{what}: {last.outcome}" + (f" ({last.reason})." if last.reason else "."))
    if inflight is not None and inflight.paused and lock and not lock.get("expired"):
        lines.append(
            f"Release {inflight.record_id} of {inflight.image} to {inflight.to_color} is waiting at a `pause`: "
            "`cutover promote` lets it go on, `cutover abort` restores traffic."
        )
    if inflight is not None and (lock is None or lock.get("expired")):
        lines.append(
            f"Release {inflight.record_id} of {inflight.image} to {inflight.to_color} was interrupted: "
            "finish it with `cutover release --resume`, or go back with `cutover rollback`."
        )
    if lock:
        until = datetime.fromtimestamp(float(lock["expires_at"]), UTC).strftime("%H:%M:%S UTC")
        held = "expired, free to take" if lock.get("expired") else f"until {until}"
        lines.append(f"Lock held by {lock.get('owner')} for {lock.get('operation')} ({held}).")
        if not lock.get("expired"):
            if good is not None and traffic.active == good.color:
                lines.append(
                    "Traffic is already on the last known good: if that operation is dead, there is nothing "
                    f"to roll back; its lease runs out at {until}."
                )
            else:
                lines.append(
                    "If that operation is dead, on-call can take the lock and go back to the last known good: "
                    "`cutover rollback --break-lock`"
                    + (
                        f"; or wait until its lease runs out at {until} and finish it: `cutover release --resume`."
                        if inflight is not None
                        else "."
                    )
                )
    else:
        lines.append("No lock is held.")
    return " ".join(lines)


@app.command()
def history(
    env: EnvOption,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="how many operations")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The audit trail: every release, shift and rollback, newest first."""
    records = build_history(envconfig.load(env)).recent(limit)
    _scope.settle()
    if as_json:
        emit_json([_record_dict(r) for r in records])
        return
    from rich.table import Table

    table = Table(title="cutover history")
    for column in ("when (UTC)", "operation", "by", "from", "to", "outcome", "seconds"):
        table.add_column(column)
    for r in records:
        table.add_row(
            datetime.fromtimestamp(r.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            r.operation + (f" {r.image}" if r.image else ""),
            r.actor,
            _weights(r.from_traffic),
            _weights(r.to_traffic),
            r.outcome,
            f"{r.seconds:.1f}" if r.seconds is not None else "-",
        )
    out.print(table)


def _weights(traffic: Traffic | None) -> str:
    return f"b{traffic.blue}/g{traffic.green}" if traffic else "-"


def _record_dict(record: Record | None) -> dict[str, Any] | None:
    return record.to_dict() if record else None


@app.command()
def rehearse(
    faults: Annotated[
        bool,
        typer.Option("--faults", help="also SIGTERM/SIGKILL pods, restart Postgres, release a broken build"),
    ] = False,
    short: Annotated[
        bool, typer.Option("--short", help="shorter bake and observation windows (for tests)")
    ] = False,
    router: Annotated[
        str,
        typer.Option(
            "--router",
            help="route53: Route53 weights (moto), DNS with TTLs and one ALB-shaped Envoy per color, "
            "as in AWS; envoy: one Envoy splitting traffic by weight",
        ),
    ] = "route53",
    as_json: JsonOption = False,
) -> None:
    """A full blue/green release and an on-call rollback of ledger on this machine, under load."""
    if router not in ("route53", "envoy"):
        raise BadInput(f"--router must be route53 or envoy (got {router!r})")
    try:
        from cutover.rehearsal.aws_path import AwsRehearsal
        from cutover.rehearsal.rehearse import Plan, Rehearsal
        from cutover.rehearsal.summary import render
    except ImportError as missing:
        raise BadInput(f"the rehearsal needs `pip install 'cutover[local]'` ({missing})") from None

    reporter = ConsoleReporter()
    plan = Plan.short(faults, router) if short else Plan(faults=faults, router=router)
    runner = AwsRehearsal if router == "route53" else Rehearsal
    report = runner(plan, reporter.note, reporter, cancel=_scope).run()
    if as_json:
        emit_json(report)
    else:
        render(report, out)
    raise typer.Exit(0 if report.get("passed") else 1)


def main(argv: list[str] | None = None, scope: CancelScope | None = None) -> int:
    """Entry point: every exit path is one clear line on stderr (and, with --json, one JSON
    object on stdout); refusals exit 2, a cancel 130/143."""
    global _scope
    _scope = scope or CancelScope()
    _scope.install()
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    _context.update(command=next((a for a in args if not a.startswith("-")), ""), env="")
    try:
        code = app(args=args, standalone_mode=False)
    except (BadInput, Refused) as bad:
        return _fail(2, "refused", str(bad), as_json)
    except Cancelled as cancelled:  # before an operation started (after, it ends in a Result)
        _scope.settle()
        return _fail(cancelled.exit_code, "cancelled", f"{cancelled}; nothing was changed", as_json)
    except (typer.Abort, KeyboardInterrupt):
        return _fail(130, "cancelled", "cancelled by SIGINT; nothing was changed", as_json)
    except TyperException as usage:  # unknown option, missing --image, ...: one line, exit 2
        format_message = getattr(usage, "format_message", None)
        message = format_message() if callable(format_message) else str(usage)
        return _fail(2, "refused", message, as_json)
    except Exception as failure:  # no credentials, API unreachable, ... before anything changed
        return _fail(1, "failed", f"{type(failure).__name__}: {failure}; nothing was changed", as_json)
    return int(code or 0)


def _fail(code: int, outcome: str, message: str, as_json: bool) -> int:
    """An exit before any operation ran (nothing changed): one line, and JSON when asked."""
    _scope.settle()
    if as_json:
        emit_json(
            {
                "operation": _context["command"] or None,
                "outcome": outcome,
                "exit_code": code,
                "reason": message,
                "before": None,
                "after": None,
            }
        )
    err.print(f"cutover: {message}", markup=False)
    return code


def run() -> None:
    """Kept for `python -m cutover.cli`; the `cutover` executable is cutover.entry:run."""
    sys.exit(main())


if __name__ == "__main__":
    run()
