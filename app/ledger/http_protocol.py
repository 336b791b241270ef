"""ledger's HTTP/1.1 protocol: uvicorn's httptools protocol with the answers it gives
before the application sees a request made to look like ledger's own.

A request the parser refuses (bad or duplicate Content-Length, NUL in a header, ...) is
answered 400 with the JSON error shape, a request id, `x-served-by` and the security
headers, then the connection is closed.
"""

from __future__ import annotations

import logging
import uuid
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ledger.errors import error_body
from ledger.middleware.headers import SECURITY_HEADERS

log = logging.getLogger("ledger.http")


class LedgerHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose own refusals carry ledger's JSON errors and headers.

    Build a configured subclass with `protocol_class`; this base answers as `unknown`.
    """

    served_by: ClassVar[bytes] = b"unknown"

    def send_400_response(self, msg: str) -> None:
        """The parser refused the request: answer 400 as JSON and close."""
        log.info("request refused by the HTTP parser", extra={"client": _peer(self.client)})
        self.refuse(400, "bad_request", "malformed HTTP request")

    def refuse(
        self, status: int, code: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        """Write a complete JSON error response outside any request cycle, then close."""
        if self.transport.is_closing():
            return
        body = error_body(code, message)
        lines = [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            b"x-request-id: " + uuid.uuid4().hex.encode() + b"\r\n",
            b"x-served-by: " + self.served_by + b"\r\n",
        ]
        lines += [name + b": " + value + b"\r\n" for name, value in (*SECURITY_HEADERS, *headers)]
        lines += [b"\r\n", body]
        self.transport.write(b"".join(lines))
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"


def protocol_class(served_by: str) -> type[LedgerHttpProtocol]:
    """A LedgerHttpProtocol subclass configured for this process (uvicorn takes a class)."""
    return type("ConfiguredLedgerHttpProtocol", (LedgerHttpProtocol,), {"served_by": served_by.encode()})
