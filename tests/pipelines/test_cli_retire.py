"""`cutover retire` as a subprocess: strict moto (Route53, DynamoDB lock and history), real
ledger processes as the colors, each color's JSON-lines access log as Envoy writes it."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from cutover.adapters.local_deployer import pid_alive
from tests.pipelines.cli_env import Env, Follow, as_json, cutover, start_cutover


def log_request(log: Path, at: float) -> None:
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with log.open("a") as file:
        file.write(json.dumps({"start_time": stamp, "method": "GET", "path": "/health/ready"}) + "\n")


def with_meter(env: Env, tmp: Path) -> tuple[Path, Path]:
    """Green runs too (weight 0); TTL 1 s, settle 2 s, access logs per color."""
    env.deployer.deploy("green", "v1", lambda _line: None)
    blue, green = tmp / "blue-access.log", tmp / "green-access.log"
    blue.write_text("")
    green.write_text("")
    spec = env.spec
    spec["router"]["answer_ttl_seconds"] = 1
    spec["traffic_meter"] = {
        "type": "envoy-access-log",
        "paths": {"blue": str(blue), "green": green.name},  # relative: to the env file
        "lag_seconds": 0.1,
        "settle_seconds": 2,
    }
    env.write_spec(spec)
    return blue, green


def test_retire_refuses_while_green_answers_then_stops_it_when_quiet(env: Env, tmp_path: Path) -> None:
    assert env.file.parent == tmp_path
    _blue, green_log = with_meter(env, tmp_path)
    green_pids = env.deployer.pids("green")
    assert green_pids and all(pid_alive(pid) for pid in green_pids)
    shifted = cutover(env, "shift", "--to", "blue", "--weight", "100", "--json")  # green to 0, on record
    assert shifted.returncode == 0, shifted.stderr
    log_request(green_log, time.time())  # a client still resolving to green
    items, weights = env.history_items(), env.weights()

    refused = cutover(env, "retire", "--json")
    assert refused.returncode == 2, refused.stderr
    answer = as_json(refused)
    assert answer["retired"] is False and answer["color"] == "green" and answer["exit_code"] == 2
    assert answer["wait_seconds"] >= 1 and "green answered a request" in answer["reason"]
    assert "retire refused: green answered a request" in refused.stderr.strip().splitlines()[-1]
    assert env.history_items() == items and env.weights() == weights and env.lock_item() is None
    assert env.deployer.pids("green") == green_pids and all(pid_alive(pid) for pid in green_pids)

    named = cutover(env, "retire", "--color", "blue", "--json")
    assert named.returncode == 2
    assert as_json(named)["reason"].startswith("blue still has weight 100; shift it to 0 first")

    # Green keeps answering until `--wait` says it waits (however long the commands above
    # took), then goes quiet: the retire must wait out the settling window, then stop it.
    waiting = start_cutover(env, "retire", "--wait", "--json")
    assert waiting.stderr is not None and waiting.stdout is not None
    progress = Follow(waiting.stderr)
    deadline = time.monotonic() + 30
    while not any("waiting until retiring is safe" in line for line in progress.lines):
        assert time.monotonic() < deadline and waiting.poll() is None, progress.lines
        log_request(green_log, time.time())
        time.sleep(0.2)
    quiet_since = time.time()
    out = waiting.stdout.read()
    assert waiting.wait(60) == 0, progress.text()
    assert time.time() - quiet_since >= 2  # the settling window, from the last request
    done = json.loads(out)
    assert done["retired"] is True and done["outcome"] == "succeeded" and done["color"] == "green"
    assert env.deployer.pids("green") == [] and not any(pid_alive(pid) for pid in green_pids)
    assert env.deployer.pids("blue") and env.weights() == weights
    assert env.history()[0]["operation"] == "retire" and env.history()[0]["outcome"] == "succeeded"

    again = cutover(env, "retire", "--json")
    assert again.returncode == 0 and as_json(again)["reason"].startswith(
        "nothing to do: green is already retired"
    )


def test_retire_without_a_traffic_meter_is_refused(env: Env) -> None:
    result = cutover(env, "retire", "--json")
    assert result.returncode == 2
    assert "needs a `traffic_meter` section" in as_json(result)["reason"]


def test_ctrl_c_while_waiting_exits_130_with_nothing_changed(env: Env, tmp_path: Path) -> None:
    with_meter(env, tmp_path)
    spec = env.spec
    spec["router"]["answer_ttl_seconds"] = 3600  # it would wait an hour
    env.write_spec(spec)
    assert cutover(env, "shift", "--to", "blue", "--weight", "100").returncode == 0
    green_pids, items = env.deployer.pids("green"), env.history_items()
    process = start_cutover(env, "retire", "--wait", "--json")
    assert process.stderr is not None and process.stdout is not None
    progress = Follow(process.stderr)
    try:
        progress.wait_for(lambda lines: any("waiting until retiring is safe" in line for line in lines))
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    answer = json.loads(process.stdout.read())
    assert code == 130 and answer["outcome"] == "cancelled" and answer["retired"] is False, progress.text()
    assert (
        env.deployer.pids("green") == green_pids and env.history_items() == items and env.lock_item() is None
    )
