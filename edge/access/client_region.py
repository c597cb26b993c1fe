"""The client's region, which the licence is checked against.

In order: the ``edge.client_region_header`` header, but only from a peer inside
``edge.trusted_proxies`` (anyone else could name any region, so from them it is ignored); then
the ``edge.client_region_cidrs`` table, longest prefix first, on the peer's address; then the
node's own ``edge.region``. A trusted proxy that sends something other than one ISO 3166-1
alpha-2 code gets a 400: guessing would serve under a region nobody vouched for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from edge.http.errors import BadRequest
from origin.manifest_schema import is_region

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Distinct peers whose trust and table region are remembered; all forgotten when it fills up
# (a plain dict: an LRU's bookkeeping cost more than the lookup it saves).
PEER_MEMO_ENTRIES = 65_536


class _PrefixTable:
    """Longest-prefix match of an address over a CIDR table, one dict probe per prefix
    length in use (at most 33 for IPv4, 129 for IPv6)."""

    def __init__(self, networks: Mapping[str, str]) -> None:
        by_length: dict[tuple[int, int], dict[int, str]] = {}
        for cidr, value in networks.items():
            network = ipaddress.ip_network(cidr, strict=False)
            by_length.setdefault((network.version, network.prefixlen), {})[
                int(network.network_address)
            ] = value
        self._levels = sorted(by_length.items(), key=lambda item: -item[0][1])

    def lookup(self, address: IPAddress) -> str | None:
        value, bits = int(address), address.max_prefixlen
        for (version, length), networks in self._levels:
            if version != address.version:
                continue
            shift = bits - length
            found = networks.get(value >> shift << shift)
            if found is not None:
                return found
        return None


class RegionResolver:
    def __init__(
        self,
        *,
        header: str,
        trusted_proxies: Iterable[str],
        cidr_regions: Mapping[str, str],
        default: str,
    ) -> None:
        self.header = header
        self.header_key = header.lower()  # as the listener keeps header names
        self.default = default
        self._trusted = _PrefixTable(dict.fromkeys(trusted_proxies, "trusted"))
        self._table = _PrefixTable(cidr_regions)
        self._peers: dict[str, tuple[bool, str]] = {}

    def resolve(self, peer: str | None, header_values: list[str]) -> str:
        """The region for a request from ``peer`` (its IP address, None if unknown) that
        carried ``header_values`` in the region header."""
        trusted, table_region = self._peer(peer)
        if trusted and header_values:
            if len(header_values) > 1:
                raise BadRequest(
                    f"{self.header} was sent {len(header_values)} times; send it once",
                    code="invalid_client_region",
                )
            code = header_values[0].strip().upper()
            if not is_region(code):
                raise BadRequest(
                    f"{self.header} must be an ISO 3166-1 alpha-2 code such as SE, "
                    f"got {header_values[0][:16]!r}",
                    code="invalid_client_region",
                )
            return code
        return table_region

    def _peer(self, peer: str | None) -> tuple[bool, str]:
        if peer is None:
            return False, self.default
        known = self._peers.get(peer)
        if known is None:
            address = _address(peer)
            if address is None:
                known = (False, self.default)
            else:
                region = self._table.lookup(address) or self.default
                known = (self._trusted.lookup(address) is not None, region)
            if len(self._peers) >= PEER_MEMO_ENTRIES:
                self._peers.clear()
            self._peers[peer] = known
        return known


def _address(peer: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 client on a dual-stack socket
    return address
