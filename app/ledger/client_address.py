"""Who the client is: the socket peer, or X-Forwarded-For when the peer is a trusted proxy.

Addresses are normalised (`ipaddress`), so one address written many ways is one client,
and an IPv4-mapped IPv6 address is its IPv4 address. For limits, an IPv6 client is its /64:
one host usually holds a whole /64, so per-address buckets would be free to multiply.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

IPV6_CLIENT_PREFIX = 64


def parse_address(text: str) -> Address | None:
    """The address `text` spells (IPv4-mapped IPv6 as IPv4, zone dropped), or None."""
    try:
        address = ipaddress.ip_address(text.strip().partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_key(address: str) -> str:
    """The bucket a client address falls in: the IPv4 address, or the IPv6 /64."""
    parsed = parse_address(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)


class ClientAddress:
    """Resolves the client address of a request or websocket scope.

    X-Forwarded-For is read only when the immediate peer is in `trusted`; then the
    rightmost address that is not itself a trusted proxy is the client (the leftmost
    entries are whatever the client chose to send, and cannot be believed).
    """

    def __init__(self, trusted: Sequence[Network]) -> None:
        self._trusted = tuple(trusted)

    def __call__(self, scope: Scope) -> str:
        """The client's normalised address ("unknown" without a peer)."""
        client = scope.get("client")
        peer = parse_address(client[0]) if client else None
        if peer is None:
            return client[0] if client else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return str(peer)
        forwarded = [
            value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
        ]
        hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = parse_address(hop)
            if address is None:
                return str(peer)
            if not self._is_trusted(address):
                return str(address)
        return str(peer)

    def key(self, scope: Scope) -> str:
        """The client's bucket for rate and connection limits (see `client_key`)."""
        return client_key(self(scope))

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)
