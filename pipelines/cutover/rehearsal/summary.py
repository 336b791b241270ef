"""The rehearsal report as tables, for people."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _mark(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]NO[/red]"


def render(report: dict[str, Any], console: Console) -> None:
    table = Table(title="cutover rehearse", show_header=False)
    table.add_column("what")
    table.add_column("measured")
    served = report.get("served_by", {})
    rows = [
        ("requests", f"{report.get('requests', 0):,}"),
        ("failed requests", str(report.get("failed_requests"))),
        ("served by blue / green", f"{served.get('blue', 0):,} / {served.get('green', 0):,}"),
        ("sticky violations", str(report.get("sticky_violations"))),
        ("transfers acknowledged", f"{report.get('transfers_acknowledged', 0):,}"),
        ("transfers persisted", f"{report.get('transfers_persisted', 0):,}"),
        ("money conserved", _mark(bool(report.get("money_conserved")))),
        ("release", _operation(report.get("release"))),
        ("rollback", _operation(report.get("rollback"))),
        *_dns_rows(report),
        *_service_rows(report),
        ("processes left", str(report.get("processes_left"))),
        ("took", f"{report.get('seconds')}s"),
        ("passed", _mark(bool(report.get("passed")))),
    ]
    for what, measured in rows:
        table.add_row(what, measured)
    console.print(table)
    follow = Table(title="traffic following each weight change")
    for column in ("to (blue/green)", "first new-color answer", "last old-color answer"):
        follow.add_column(column)
    for step in report.get("traffic_follow", []):
        first = next((v for k, v in step.items() if k.startswith("first_")), None)
        last = next((v for k, v in step.items() if k.startswith("last_")), None)
        follow.add_row(
            f"{step['to']['blue']}/{step['to']['green']}",
            f"{first:.3f}s" if first is not None else "-",
            f"{last:.3f}s" if last is not None else "-",
        )
    console.print(follow)
    if report.get("faults"):
        faults = Table(title="faults")
        for column in ("scenario", "seconds", "requests", "failed (retried)", "outcome", "as expected"):
            faults.add_column(column)
        for fault in report["faults"]:
            faults.add_row(
                fault["scenario"],
                str(fault.get("seconds", "-")),
                str(fault["requests"]),
                str(fault["failed_requests"]),
                _fault_outcome(fault),
                _mark(bool(fault["as_expected"])) if "as_expected" in fault else "-",
            )
        console.print(faults)
        console.print(f"acknowledged transfers lost: {report.get('transfers_lost')}")


def _operation(operation: dict[str, Any] | None) -> str:
    if not operation:
        return "-"
    return f"{operation['outcome']} in {operation['seconds']}s"


def _dns_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The AWS path's rows: the TTL, the old color's requests after the switch, the retire."""
    after, retire = report.get("after_last_change"), report.get("retire")
    if not after or not retire:
        return []
    last = after.get("last_answer_s")
    return [
        ("router", f"route53 (DNS TTL {report.get('dns_ttl_seconds')}s)"),
        (
            f"{after['old_color']} after its weight went to 0",
            f"{after['requests']:,} requests, the last after {last if last is not None else '-'}s "
            f"(bound {after['bound_s']:g}s)",
        ),
        (
            f"retire {retire['color']}",
            f"{retire['outcome']} after waiting {retire['waited_seconds']}s, "
            f"{retire['failed_requests']} failed",
        ),
    ]


def _service_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """A line per other service: its release and rollback, its own requests."""
    rows = []
    for name, service in (report.get("services") or {}).items():
        served = service.get("served_by", {})
        rows.append(
            (
                name,
                f"release {_operation(service.get('release'))}, rollback {_operation(service.get('rollback'))}; "
                f"{service.get('requests', 0):,} requests, {service.get('failed_requests')} failed, "
                f"blue / green {served.get('blue', 0):,} / {served.get('green', 0):,}",
            )
        )
    return rows


def _fault_outcome(fault: dict[str, Any]) -> str:
    """What happened; the old Envoy-path lines have no `outcome`, only the release's."""
    if "outcome" in fault:
        on_call = f" On-call: {fault['on_call']}" if fault.get("on_call") else ""
        return f"{fault['outcome']}{on_call}"
    outcome = str(fault.get("release_outcome", ""))
    if "rolled_back_as_expected" in fault:
        outcome = f"{outcome}, traffic stayed on blue: {'yes' if fault['rolled_back_as_expected'] else 'NO'}"
    return outcome
