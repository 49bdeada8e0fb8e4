"""Which network addresses a push target may reach (CONTRACT.md §5, "Target addresses").

Link-local and metadata addresses are always refused, whatever their spelling (decimal, octal,
hex, IPv4-mapped, NAT64). Loopback and private networks are refused unless the deployment allows
them (`AllowedTargetNetworks` in the template, `--allow-target` in dev; dev allows loopback).
The policy is process-wide, configured once by the composition root.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_ALWAYS_REFUSED: tuple[Network, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("255.255.255.255/32"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass
class NetworkPolicy:
    """Networks a target may reach beyond the public internet."""

    allowed: list[Network] = field(default_factory=list)

    def refusal(self, addr: IPAddress) -> str | None:
        """Why `addr` may not be reached, or None when it may."""
        addr = _unwrap(addr)
        if any(addr in net for net in _ALWAYS_REFUSED if net.version == addr.version):
            return f"{addr} is a link-local, metadata or reserved address"
        if any(addr in net for net in self.allowed if net.version == addr.version):
            return None
        if addr.is_loopback:
            return f"{addr} is a loopback address"
        if addr.is_private or addr.is_reserved or not addr.is_global:
            return f"{addr} is a private address (allow its network to reach it)"
        return None


_policy = NetworkPolicy()


def configure(allowed: list[str]) -> None:
    """Set the process-wide policy from CIDR strings (e.g. `127.0.0.0/8`)."""
    _policy.allowed = [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in allowed if cidr.strip()]


def current() -> NetworkPolicy:
    """The process-wide policy."""
    return _policy


def _unwrap(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally — in any spelling `inet_aton` accepts (`2130706433`,
    `0177.0.0.1`, `0x7f.1`, `127.1`) or IPv6 — or None for a DNS name."""
    # A trailing dot (a fully qualified name) resolves to the same address: `169.254.169.254.`
    host = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    # Legacy IPv4 spellings: only digits, hex digits with 0x, and dots.
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url_literal(url: str) -> str:
    """Validate a target URL: http(s), a host, and no refused literal address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use headers")
    addr = literal_address(host)
    if addr is not None and (why := _policy.refusal(addr)):
        raise ValueError(f"target address refused: {why}")
    try:
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return url
