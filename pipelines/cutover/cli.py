"""The `cutover` command: status, release, shift, rollback, history, rehearse.

Exit codes: 0 done; 1 the operation failed and the previous traffic was restored;
2 bad input or refused (nothing changed); 3 another operation holds the lock.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from cutover import envconfig
from cutover.adapters.http_health import HttpHealth
from cutover.build import build_deployer, build_history, build_lock, build_machine, build_router
from cutover.machine import ReleaseMachine, Reporter, Result, State
from cutover.model import COLORS, BadInput, parse_color, parse_strategy
from cutover.ports import Record

app = typer.Typer(
    name="cutover",
    help="Blue/green releases: release, shift, rollback, and see where traffic is.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

EnvOption = Annotated[
    str,
    typer.Option(
        "--env", envvar="CUTOVER_ENV", help="environment name or file (see docs/runbooks/release.md)"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]


class ConsoleReporter(Reporter):
    """Progress on stderr: every state the machine enters, and notes within it."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def state(self, state: State, detail: str = "") -> None:
        style = {
            "succeeded": "bold green",
            "failed": "bold red",
            "refused": "bold yellow",
            "locked": "bold yellow",
        }
        err.print(
            f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] [{style.get(state.value, 'bold')}]{state.value}[/]"
            + (f"  {detail}" if detail else "")
        )

    def note(self, message: str) -> None:
        err.print(f"[dim]{time.monotonic() - self.started:6.1f}s    {message}[/dim]")


def _machine(env: str) -> ReleaseMachine:
    """The machine for `env`, after a read of the traffic records: an environment whose
    records are missing is refused here, before any progress output or lock."""
    config = envconfig.load(env)
    router = build_router(config)
    router.read()
    return build_machine(config, ConsoleReporter(), router)


def _finish(result: Result, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    elif result.exit_code == 0:
        err.print(f"cutover: {result.operation} succeeded in {result.seconds:.1f}s: {result.after}")
    else:
        err.print(f"cutover: {result.operation} {result.state.value}: {result.reason}")
    raise typer.Exit(result.exit_code)


@app.command()
def release(
    image: Annotated[str, typer.Option("--image", help="image tag to release")],
    env: EnvOption,
    strategy: Annotated[
        str, typer.Option(help="all-at-once | canary:10,50,100 | linear:25")
    ] = "canary:10,50,100",
    bake: Annotated[float | None, typer.Option(help="seconds to bake after each partial step")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="finish a release that left traffic split")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Deploy IMAGE to the idle color and move traffic to it, step by step."""
    steps = parse_strategy(strategy)
    if not image.strip():
        raise BadInput("--image must not be empty")
    if bake is not None and bake < 0:
        raise BadInput(f"--bake must be 0 or more seconds (got {bake:g})")
    machine = _machine(env)
    _finish(machine.release(image.strip(), steps, bake=bake, resume=resume), as_json)


@app.command()
def shift(
    to: Annotated[str, typer.Option("--to", help="blue or green")],
    weight: Annotated[int, typer.Option("--weight", help="0-100: the share COLOR gets")],
    env: EnvOption,
    as_json: JsonOption = False,
) -> None:
    """Give COLOR a WEIGHT of the traffic, with the same health gates as a release."""
    color = parse_color(to)
    if not 0 <= weight <= 100:
        raise BadInput(f"--weight must be from 0 to 100 (got {weight})")
    machine = _machine(env)
    _finish(machine.shift(color, weight), as_json)


@app.command()
def rollback(
    env: EnvOption,
    force: Annotated[
        bool, typer.Option("--force", help="roll back even if that color fails its health check")
    ] = False,
    break_lock: Annotated[
        bool, typer.Option("--break-lock", help="take the lock from a stuck operation (recorded in history)")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """All traffic back to the previous color, in one atomic change."""
    machine = _machine(env)
    _finish(machine.rollback(force=force, break_lock=break_lock), as_json)


@app.command()
def status(env: EnvOption, as_json: JsonOption = False) -> None:
    """Where traffic is, what each color runs and whether it is healthy; the lock; the last operation."""
    config = envconfig.load(env)
    traffic = build_router(config).read()
    deployer = build_deployer(config)
    health = HttpHealth(config.endpoints, config.smoke_checks)
    lock = build_lock(config).holder()
    recent = build_history(config).recent(1)
    last = recent[0] if recent else None
    colors: dict[str, Any] = {}
    for color in COLORS:
        healthy, why = health.ready(color)
        colors[color] = {
            "weight": traffic.weight(color),
            "image": deployer.current_image(color),
            "healthy": healthy,
            "health": why,
            "endpoint": config.endpoints[color],
        }
    report = {
        "env": config.name,
        "traffic": traffic.as_dict(),
        "active": traffic.active,
        "colors": colors,
        "lock": lock,
        "last_operation": _record_dict(last),
        "explanation": explain(traffic.active, traffic.as_dict(), lock, last),
    }
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(title=f"cutover status: {config.name}")
    for column in ("color", "weight", "image", "health", "endpoint"):
        table.add_column(column)
    for name, info in colors.items():
        mark = "[green]ok[/green]" if info["healthy"] else f"[red]{info['health']}[/red]"
        table.add_row(name, f"{info['weight']}%", str(info["image"] or "-"), mark, info["endpoint"])
    out.print(table)
    out.print(report["explanation"])


def explain(
    active: str | None, traffic: dict[str, int], lock: dict[str, Any] | None, last: Record | None
) -> str:
    """One paragraph for on-call: what state this is and what to type next."""
    lines = []
    if active:
        lines.append(f"All traffic is on {active}.")
    else:
        lines.append(f"Traffic is split: blue {traffic['blue']}%, green {traffic['green']}%.")
    if last is not None:
        when = datetime.fromtimestamp(last.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        what = f"Last operation: {last.operation} {last.id} by {last.actor} at {when}"
        if last.outcome == "running":
            lines.append(f"{what} did not finish (it is running, or its process died).")
            if not active and last.operation == "release":
                lines.append(
                    f"Finish it with `cutover release --image {last.image} --resume`, "
                    "or go back with `cutover rollback`."
                )
        else:
            lines.append(f"{what}: {last.outcome}" + (f" ({last.reason})." if last.reason else "."))
    if lock:
        until = datetime.fromtimestamp(float(lock["expires_at"]), UTC).strftime("%H:%M:%S UTC")
        state = "expired, free to take" if lock.get("expired") else f"until {until}"
        lines.append(f"Lock held by {lock.get('owner')} for {lock.get('operation')} ({state}).")
        if not lock.get("expired"):
            lines.append(
                "If that operation is dead, on-call can take the lock: `cutover rollback --break-lock`."
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
    if as_json:
        out.print_json(json.dumps([_record_dict(r) for r in records]))
        return
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


def _weights(traffic: dict[str, int] | None) -> str:
    return f"b{traffic['blue']}/g{traffic['green']}" if traffic else "-"


def _record_dict(record: Record | None) -> dict[str, Any] | None:
    from dataclasses import asdict

    return asdict(record) if record else None


@app.command()
def rehearse(
    faults: Annotated[
        bool,
        typer.Option("--faults", help="also SIGTERM/SIGKILL pods, restart Postgres, release a broken build"),
    ] = False,
    short: Annotated[
        bool, typer.Option("--short", help="shorter bake and observation windows (for tests)")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A full blue/green release and an on-call rollback of ledger on this machine, under load."""
    from cutover.rehearsal.rehearse import Plan, Rehearsal
    from cutover.rehearsal.summary import render

    reporter = ConsoleReporter()
    plan = Plan.short(faults) if short else Plan(faults=faults)
    report = Rehearsal(plan, reporter.note, reporter).run()
    if as_json:
        out.print_json(json.dumps(report))
    else:
        render(report, out)
    raise typer.Exit(0 if report.get("passed") else 1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every refusal is one line on stderr and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except BadInput as bad:
        err.print(f"cutover: {bad}", markup=False)
        return 2
    except typer.Abort:
        err.print("cutover: aborted")
        return 130
    except TyperException as usage:  # unknown option, missing --image, ...: one line, exit 2
        format_message = getattr(usage, "format_message", None)
        message = format_message() if callable(format_message) else str(usage)
        err.print(f"cutover: {message}", markup=False)
        return 2
    except Exception as failure:  # no credentials, API unreachable, ... before anything changed
        err.print(f"cutover: {type(failure).__name__}: {failure}", markup=False)
        return 1
    return int(code or 0)


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
