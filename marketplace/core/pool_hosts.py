"""Which hosts a buyer's pool may be on: the operator's allow list (``serve --pool-allow``).

Theory of operation
-------------------
A buyer names a host and the node opens a connection to it; without a rule the marketplace
could be made to connect anywhere inside the operator's network. So the operator lists what it
allows (proxy.md): addresses and networks (``127.0.0.0/8``, ``::1``, ``10.1.2.3``) and host
names (``pool.example.com``, matched whole and without regard to case). The default is loopback
only: ``127.0.0.0/8`` and ``::1``, and the name ``localhost``, which names nothing else.

- A host given as an address is allowed when a listed network holds it.
- A host given as a name is allowed when the name is listed (``allows_host``). Names are
  resolved only at connect time, by the driver, which checks every address the name resolved
  to as well (``allows_resolved``): a listed name is the operator's own choice, any other name
  (e.g. the target of a pool's ``client.reconnect``) must resolve only to allowed addresses.

Refusals happen before any connection is attempted. Everything here is pure (``ipaddress``
parses, nothing resolves).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The operator's default: loopback only.
DEFAULT_POOL_ALLOW: Final = ("127.0.0.0/8", "::1", "localhost")
#: A DNS host name: labels of letters, digits and inner hyphens, dot-separated, <= 253 chars.
_NAME_RE: Final = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?"
)


def parse_address(host: str) -> IpAddress | None:
    """``host`` as an IP address (``[::1]`` brackets allowed), or ``None`` for a name."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_host(host: str) -> bool:
    """Whether ``host`` is an IP address or a well-formed DNS name."""
    return parse_address(host) is not None or _NAME_RE.fullmatch(host) is not None


class AllowList:
    """The hosts the node may open pool connections to (see the module doc)."""

    __slots__ = ("_names", "_networks", "entries")

    def __init__(self, entries: Iterable[str] = DEFAULT_POOL_ALLOW) -> None:
        """Raises ``ValueError`` for an entry that is neither a network, an address nor a
        host name."""
        self.entries: tuple[str, ...] = tuple(entries)
        networks: list[IpNetwork] = []
        names: set[str] = set()
        for entry in self.entries:
            text = entry.strip()
            address = parse_address(text)
            if address is not None:
                networks.append(ipaddress.ip_network(address))
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if _NAME_RE.fullmatch(text) is None:
                raise ValueError(f"--pool-allow {entry!r}: not a host name, an address or a CIDR")
            names.add(text.rstrip(".").lower())
        self._networks = tuple(networks)
        self._names = frozenset(names)

    def allows_address(self, address: IpAddress) -> bool:
        """Whether a listed network holds ``address``."""
        return any(address.version == net.version and address in net for net in self._networks)

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (an address, or a name as given, before any resolution) is
        allowed."""
        address = parse_address(host)
        if address is not None:
            return self.allows_address(address)
        return host.rstrip(".").lower() in self._names

    def allows_resolved(self, host: str, addresses: Sequence[str]) -> bool:
        """Whether a connection to ``host``, resolved to ``addresses``, is allowed: a listed
        name, or every address held by a listed network (and at least one address)."""
        if parse_address(host) is None and host.rstrip(".").lower() in self._names:
            return True
        parsed = [parse_address(a) for a in addresses]
        return bool(parsed) and all(a is not None and self.allows_address(a) for a in parsed)

    def describe(self) -> str:
        """The list as the operator gave it, for error messages."""
        return ", ".join(self.entries)
