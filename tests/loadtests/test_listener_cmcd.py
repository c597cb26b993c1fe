"""CMCD encoded by CTA-5004's rules, checked against the specification's own query example."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from loadtests import listener_cmcd as cmcd

# CTA-5004's example of every key sent as a query argument.
SPEC_DATA: dict[str, cmcd.CmcdValue] = {
    "tb": 6000,
    "su": True,
    "st": "v",
    "sid": "6e2fb550-c457-11e9-bb97-0800200c9a66",
    "sf": "d",
    "rtp": 12000,
    "pr": 1.08,
    "ot": "v",
    "nrr": "12323-48763",
    "nor": "../300kbps/track.m4v",
    "mtp": 48100,
    "dl": 18500,
    "d": 4004,
    "cid": "faec5fc2-ac30-11ea-bb37-0242ac130002",
    "bs": True,
    "br": 3200,
    "bl": 21300,
    "v": 1,
}
SPEC_QUERY = (
    "CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22faec5fc2-ac30-11ea-bb37-0242ac130002%22"
    "%2Cd%3D4004%2Cdl%3D18500%2Cmtp%3D48100%2Cnor%3D%22..%252F300kbps%252Ftrack.m4v%22"
    "%2Cnrr%3D%2212323-48763%22%2Cot%3Dv%2Cpr%3D1.08%2Crtp%3D12000%2Csf%3Dd"
    "%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D6000"
)


def test_the_specifications_example_encodes_exactly() -> None:
    assert cmcd.query_argument(SPEC_DATA) == SPEC_QUERY


def test_keys_are_sorted_booleans_bare_or_absent_strings_quoted_tokens_bare() -> None:
    encoded = cmcd.encode(
        {"su": True, "bs": False, "ot": "a", "cid": 'say "hi" \\o/', "br": 160, "nrr": None}
    )
    assert encoded == 'br=160,cid="say \\"hi\\" \\\\o/",ot=a,su'


def test_rounding_follows_the_specification() -> None:
    encoded = cmcd.encode({"bl": 2049.9, "mtp": 48150, "dl": 49.9, "br": 160.5, "d": 4003.4})
    assert encoded == "bl=2000,br=161,d=4003,dl=0,mtp=48200"  # half up, as Math.round


def test_defaults_are_left_out_and_other_rates_written_as_decimals() -> None:
    assert cmcd.encode({"v": 1, "pr": 1.0, "cid": ""}) == ""
    assert cmcd.encode({"pr": 16.0}) == "pr=16"
    assert cmcd.encode({"pr": 2.0001}) == "pr=2.0"  # at most 3 fractional digits
    assert cmcd.query_argument({}) == ""


def test_strings_must_fit_the_specification() -> None:
    with pytest.raises(ValueError, match="64"):
        cmcd.encode({"cid": "x" * 65})
    with pytest.raises(ValueError, match="ASCII"):
        cmcd.encode({"cid": "låt"})


def test_the_argument_goes_after_any_query_and_decodes_back() -> None:
    data: dict[str, cmcd.CmcdValue] = {"ot": "a", "sid": "s-1", "bl": 2000}
    signed = cmcd.with_query_argument("/v1/tracks/t1/160?exp=1&kid=k&sig=abc", data)
    assert signed.startswith("/v1/tracks/t1/160?exp=1&kid=k&sig=abc&CMCD=")
    query = parse_qs(urlsplit(signed).query)
    assert query["CMCD"] == ['bl=2000,ot=a,sid="s-1"']
    assert query["sig"] == ["abc"]
    assert cmcd.with_query_argument("/v1/tracks/t1", data).startswith("/v1/tracks/t1?CMCD=")


def test_nor_is_relative_to_the_request() -> None:
    assert cmcd.relative_path("/v1/tracks/t2", "/v1/tracks/t1/160?exp=1") == "../t2"
