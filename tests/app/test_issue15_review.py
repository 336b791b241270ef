"""Review of issue 15: the OpenAPI document against answers no route writes."""

from __future__ import annotations

import ast
from pathlib import Path

from starlette.testclient import TestClient

from ledger import http_protocol
from ledger.app import create_app
from ledger.config import Settings
from ledger.openapi import build_openapi

_ENV = {"DATABASE_URL": "postgresql://ledger@127.0.0.1:9/ledger"}


def protocol_answers() -> set[tuple[int, str]]:
    """(status, code) of every answer http_protocol.py writes itself, read from its source."""
    tree = ast.parse(Path(http_protocol.__file__).read_text())
    answers: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        args = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if node.func.attr == "_refuse_connection" and len(args) >= 2:
            answers.add((int(str(args[0])), str(args[1])))
        elif node.func.attr == "time_out" and args:
            answers.add((408, str(args[0])))
    return answers


def test_the_protocol_writes_the_answers_this_review_expects() -> None:
    """The source reading finds them all (so the next test cannot pass on an empty set)."""
    assert protocol_answers() >= {
        (400, "bad_request"),
        (408, "header_timeout"),
        (408, "body_timeout"),
        (431, "request_header_fields_too_large"),
        (503, "over_capacity"),
        (503, "shutting_down"),
    }


def test_every_answer_the_connection_layer_writes_is_named_in_the_document() -> None:
    """A client generator reading /openapi.json learns of 400/408/431 and the protocol's 503
    codes (whose Retry-After may be 0 and which carry no traceparent) from info.description."""
    description = build_openapi("1")["info"]["description"]
    missing = [
        (s, c)
        for s, c in sorted(protocol_answers())
        if str(s) not in description or f"`{c}`" not in description
    ]
    assert not missing, missing
    assert "Retry-After 0" in description


def test_head_on_a_get_path_is_answered_and_documented() -> None:
    """Starlette answers HEAD on every GET route: the document says so (it is no 405)."""
    app, _ = create_app(Settings.from_env(_ENV))
    with_head = TestClient(app).head("/openapi.json")  # no lifespan: this route needs no database
    assert with_head.status_code == 200 and with_head.content == b""
    assert "HEAD" in build_openapi("1")["info"]["description"]
