"""Who a request comes from, for the limits kept per client: the TCP peer or, when that peer is a
reverse proxy the operator named (``VOTE_LEDGER_TRUSTED_PROXIES``), the address the proxy saw."""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

from api.keys import SETTINGS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The trusted proxies as networks (an address is a network of one); ValueError for a bad one."""
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or behind a trusted proxy the last ``X-Forwarded-For`` hop.

    Only the last hop is the proxy's own word (nginx's ``$proxy_add_x_forwarded_for`` appends the
    address it accepted the connection from); the hops before it are whatever the client sent.
    A peer that is not a trusted proxy is taken as the client, whatever it sends in the header.
    """
    peer = request.remote or "unknown"
    trusted = networks(request.app[SETTINGS].trusted_proxies)
    if not trusted or not _within(peer, trusted):
        return peer
    forwarded = request.headers.getall("X-Forwarded-For", ())
    hops = [hop.strip() for value in forwarded for hop in value.split(",")]
    try:
        return str(ipaddress.ip_address(hops[-1]))
    except (IndexError, ValueError):
        return peer  # a proxy that sent no usable hop: its own address is all there is


def _within(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
