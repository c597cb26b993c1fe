"""The client's region: the header only from trusted proxies, then the CIDR table (longest
prefix), then the node's region. Unit cases on the resolver, and real requests from several
loopback source addresses, with networks written as IPv4 or as IPv4-mapped IPv6."""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable

import pytest

from edge.access import client_region
from edge.access.client_region import RegionResolver
from edge.http.errors import BadRequest
from origin.license import License
from origin.settings import load_settings
from tests.conftest import TEST_SLICE_BYTES, Catalog
from tests.support.edge_server import Counters, EdgeServer


def _resolver(**overrides: object) -> RegionResolver:
    options: dict[str, object] = {
        "header": "X-Client-Region",
        "trusted_proxies": ["10.0.0.0/8", "fd00::/8"],
        "cidr_regions": {"192.0.2.0/24": "NO", "192.0.2.128/25": "DK", "2001:db8::/32": "FI"},
        "default": "SE",
    } | overrides
    return RegionResolver(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("peer", "header", "region"),
    [
        ("10.1.2.3", ["us"], "US"),  # a trusted proxy: its header decides (any case)
        ("fd00::1", ["DE"], "DE"),
        ("10.1.2.3", [], "SE"),  # a trusted proxy without the header: the table, then default
        ("192.0.2.7", ["US"], "NO"),  # not trusted: the header is ignored, the table decides
        ("192.0.2.200", [], "DK"),  # the longest prefix wins
        ("::ffff:192.0.2.200", [], "DK"),  # IPv4 on a dual-stack socket
        ("2001:db8::5", ["US"], "FI"),
        ("203.0.113.9", ["US"], "SE"),  # neither: the node's region
        (None, ["US"], "SE"),  # no peer address (a Unix socket)
        ("not-an-ip", ["US"], "SE"),
    ],
)
def test_resolution_order(peer: str | None, header: list[str], region: str) -> None:
    assert _resolver().resolve(peer, header) == region


@pytest.mark.parametrize("header", [["XX"], ["S"], ["SE, NO"], ["SE", "NO"], ["É"], [""]])
def test_a_trusted_proxy_sending_a_bad_region_gets_a_400(header: list[str]) -> None:
    with pytest.raises(BadRequest) as caught:
        _resolver().resolve("10.0.0.1", header)
    assert caught.value.code == "invalid_client_region"


def test_a_bad_header_from_an_untrusted_peer_is_ignored_too() -> None:
    assert _resolver().resolve("203.0.113.9", ["XX", "YY"]) == "SE"


def test_the_memo_of_peers_is_bounded_and_answers_the_same_after_it_fills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_region, "PEER_MEMO_ENTRIES", 4)
    resolver = _resolver()
    peers = [f"192.0.2.{host}" for host in range(120, 140)]
    first = [resolver.resolve(peer, []) for peer in peers]
    assert len(resolver._peers) <= 4
    assert [resolver.resolve(peer, []) for peer in peers] == first
    assert (first[0], first[-1]) == ("NO", "DK")


def _get(port: int, path: str, source: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_real_requests_from_untrusted_peers_get_their_table_region(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    only = {
        region: catalog.publish({"160": os.urandom(TEST_SLICE_BYTES)}, license=License((region,)))
        for region in ("SE", "NO", "DE", "US")
    }
    edge = start_edge(
        edge={
            "trusted_proxies": ("10.0.0.0/8",),  # loopback is not trusted here
            "client_region_cidrs": {"127.0.0.0/8": "NO", "127.0.0.2/32": "DE"},
        }
    )
    counters = Counters(edge)
    spoof = {"X-Client-Region": "US"}

    def status(region: str, source: str) -> int:
        return _get(edge.port, f"/v1/tracks/{only[region].track_id}/160", source, spoof)[0]

    # 127.0.0.1 is in the table as NO, 127.0.0.2 as DE; the spoofed US header counts for nothing.
    assert [status(r, "127.0.0.1") for r in ("SE", "NO", "DE", "US")] == [451, 200, 451, 451]
    assert [status(r, "127.0.0.2") for r in ("SE", "NO", "DE", "US")] == [451, 451, 200, 451]
    # Regions the config names are metric labels; the US is not one of them.
    assert counters.delta("encore_license_denials_total", reason="region", region="NO") == 3
    assert counters.delta("encore_license_denials_total", reason="region", region="DE") == 3
    assert counters.delta("encore_license_denials_total", reason="region", region="US") == 0


def test_a_trusted_proxy_header_decides_and_a_bad_one_is_a_400(
    catalog: Catalog, edge: EdgeServer
) -> None:
    us_only = catalog.publish({"160": os.urandom(100)}, license=License(("US",)))
    path = f"/v1/tracks/{us_only.track_id}"
    assert edge.get(path).status == 451  # no header: the node's region, SE
    assert edge.get(path, X_Client_Region="US").status == 200  # loopback is trusted by default
    reply = edge.get(path, X_Client_Region="USA")
    assert reply.status == 400
    assert json.loads(reply.body)["error"] == "invalid_client_region"


def test_v4_mapped_networks_in_the_config_match_ipv4_peers(
    catalog: Catalog, start_edge: Callable[..., EdgeServer]
) -> None:
    us_only = catalog.publish({"160": os.urandom(100)}, license=License(("US",)))
    no_only = catalog.publish({"160": os.urandom(100)}, license=License(("NO",)))
    # Parsed as the node parses its config (start_edge takes the values as they are).
    parsed = load_settings(
        None,
        env={
            "ENCORE_EDGE__TRUSTED_PROXIES": '["::ffff:127.0.0.1/128"]',
            "ENCORE_EDGE__CLIENT_REGION_CIDRS": '{"::ffff:127.0.0.2/128" = "NO"}',
        },
    ).edge
    edge = start_edge(
        edge={
            "trusted_proxies": parsed.trusted_proxies,
            "client_region_cidrs": parsed.client_region_cidrs,
        }
    )
    tracks = (us_only.track_id, no_only.track_id)

    def statuses(source: str) -> list[int]:
        spoof = {"X-Client-Region": "US"}
        return [_get(edge.port, f"/v1/tracks/{t}/160", source, spoof)[0] for t in tracks]

    assert statuses("127.0.0.1") == [200, 451]  # a trusted proxy: its US header decides
    assert statuses("127.0.0.2") == [451, 200]  # not trusted: the table places it in Norway
