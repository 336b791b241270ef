"""`make bench`: every benchmark, each a ratio against a baseline measured in the same run."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench import middleware_overhead, ratelimit_overhead, rollback_vs_boto3, transfers_vs_pgbench, ws_fanout
from cutover.local.database import migrate_database
from cutover.local.postgres import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results" / "latest.json"


def _rounds(ratios: tuple[float, ...]) -> str:
    return " ".join(f"{r:.2f}" for r in ratios)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pg") as postgres:
        url = postgres.create_database("bench")
        migrate_database(url)
        print(
            "1/5 /health/live: full middleware stack vs bare ASGI app (wrk, 64 connections) ...", flush=True
        )
        overhead = middleware_overhead.run(url)
        print(
            f"    ledger {overhead.ledger_rps:,.0f} req/s, bare {overhead.bare_rps:,.0f} req/s, "
            f"ratio {overhead.ratio:.2f}x (target >= 0.5x; rounds {_rounds(overhead.round_ratios)})",
            flush=True,
        )
        print("2/5 POST /transfers vs pgbench, same transaction, same Postgres (16 clients) ...", flush=True)
        transfers = transfers_vs_pgbench.run(url)
        print(
            f"    ledger {transfers.ledger_tps:,.0f} transfers/s, pgbench {transfers.pgbench_tps:,.0f} tps, "
            f"ratio {transfers.ratio:.2f}x (target >= 0.5x; rounds {_rounds(transfers.round_ratios)})",
            flush=True,
        )
        print("3/5 rate limiter on a cheap route (GET /cluster): on vs off ...", flush=True)
        limiter = ratelimit_overhead.run(url)
        print(
            f"    on {limiter.on_rps:,.0f} req/s, off {limiter.off_rps:,.0f} req/s, ratio {limiter.ratio:.2f}x",
            flush=True,
        )
        print(
            f"4/5 websocket fan-out: {ws_fanout.TRANSFERS} transfers through A, delivered on B ...",
            flush=True,
        )
        fanout = ws_fanout.run(url)
        pct = ws_fanout.Result.percentile
        print(
            f"    delivery after A's 201: median {pct(fanout.after_ack_ms, 0.5):.2f} ms, "
            f"p99 {pct(fanout.after_ack_ms, 0.99):.2f} ms; after the POST was sent: "
            f"median {pct(fanout.after_send_ms, 0.5):.2f} ms, p99 {pct(fanout.after_send_ms, 0.99):.2f} ms",
            flush=True,
        )
        print("5/5 cutover rollback (whole process) vs a bare boto3 script, moto server ...", flush=True)
        rollback = rollback_vs_boto3.run(url)
        print(
            f"    cutover rollback {rollback.cutover_seconds:.2f}s, bare boto3 {rollback.bare_seconds:.2f}s, "
            f"ratio {rollback.ratio:.2f}x (time; lower is better)",
            flush=True,
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "health_live_vs_bare_asgi": {
                    "ratio": round(overhead.ratio, 3),
                    "ledger_rps": overhead.ledger_rps,
                    "bare_rps": overhead.bare_rps,
                    "round_ratios": [round(r, 3) for r in overhead.round_ratios],
                },
                "rate_limiter_on_vs_off": {
                    "ratio": round(limiter.ratio, 3),
                    "on_rps": limiter.on_rps,
                    "off_rps": limiter.off_rps,
                },
                "ws_fanout_ms": {
                    "after_ack_median": round(pct(fanout.after_ack_ms, 0.5), 3),
                    "after_ack_p99": round(pct(fanout.after_ack_ms, 0.99), 3),
                    "after_send_median": round(pct(fanout.after_send_ms, 0.5), 3),
                    "after_send_p99": round(pct(fanout.after_send_ms, 0.99), 3),
                },
                "rollback_vs_bare_boto3": {
                    "ratio": round(rollback.ratio, 3),
                    "cutover_seconds": round(rollback.cutover_seconds, 3),
                    "bare_seconds": round(rollback.bare_seconds, 3),
                },
                "transfers_vs_pgbench": {
                    "ratio": round(transfers.ratio, 3),
                    "ledger_tps": transfers.ledger_tps,
                    "pgbench_tps": transfers.pgbench_tps,
                    "round_ratios": [round(r, 3) for r in transfers.round_ratios],
                },
            },
            indent=2,
        )
    )
    print(
        f"results written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    main()
