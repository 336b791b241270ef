"""The `cutover` executable. SIGINT and SIGTERM are turned into a clean cancel before
anything else is imported, so a signal at any moment of the process ends in one line (and
one JSON object with --json) and exit code 130/143, never a traceback or a silent death."""

from __future__ import annotations

import json
import sys

from cutover.cancel import Cancelled, CancelScope


def run() -> None:
    scope = CancelScope()
    scope.install()
    try:
        from cutover import cli
    except Cancelled as cancelled:  # while starting: nothing was read or changed
        if "--json" in sys.argv[1:]:
            print(
                json.dumps(
                    {"outcome": "cancelled", "exit_code": cancelled.exit_code, "reason": str(cancelled)}
                )
            )
        print(f"cutover: {cancelled}; nothing was changed", file=sys.stderr)
        sys.exit(cancelled.exit_code)
    sys.exit(cli.main(scope=scope))
