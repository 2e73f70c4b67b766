"""Who a rate limit counts: a client's address, with IPv6 counted per /64."""

import ipaddress


def client_key(address: str | None) -> str:
    """The rate-limit key of a client address: the address, or for IPv6 its /64, since one
    subscriber commonly holds a whole /64 (an IPv4-mapped address counts as its IPv4)."""
    if address is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
