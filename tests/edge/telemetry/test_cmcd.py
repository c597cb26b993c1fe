"""The CMCD parser (edge.telemetry.cmcd): what dash.js and Media3 send is read; every kind of
malformed value is ignored and its reason noted, the rest of the report kept; headers win
over the query argument; the input is bounded; and no input makes it raise (hypothesis). The
request takes the ``CMCD`` argument out of its query once, for the signed-URL memo."""

from __future__ import annotations

import time
from urllib.parse import quote, unquote, unquote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.http.request import Request
from edge.telemetry import cmcd, cmcd_values
from edge.telemetry.cmcd import CmcdReport
from edge.telemetry.cmcd_values import Problem

# CTA-5004's example of every key, as a query argument (encodeURIComponent, nor encoded twice).
SPEC_QUERY = (
    "bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22faec5fc2-ac30-11ea-bb37-0242ac130002%22"
    "%2Cd%3D4004%2Cdl%3D18500%2Cmtp%3D48100%2Cnor%3D%22..%252F300kbps%252Ftrack.m4v%22"
    "%2Cnrr%3D%2212323-48763%22%2Cot%3Dv%2Cpr%3D1.08%2Crtp%3D12000%2Csf%3Dd"
    "%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D6000"
)
SPEC_REPORT = CmcdReport(
    bitrate_kbps=3200,
    buffer_ms=21300,
    throughput_kbps=48100,
    stalled=True,
    startup=True,
    session_id="6e2fb550-c457-11e9-bb97-0800200c9a66",
    next_object="../300kbps/track.m4v",
    next_range=(12323, 48763),
)
# Media3's header mode: the keys spread over the four headers.
MEDIA3_HEADERS = {
    "cmcd-object": "br=160,d=10000,ot=a,tb=320",
    "cmcd-request": 'bl=4200,mtp=2100,nor="..%2Ft2%2F160",nrr="262144-"',
    "cmcd-session": 'cid="t1",sf=o,sid="s-1",st=v',
    "cmcd-status": "bs",
}


def _request(target: str = "/v1/tracks/t1/160", **headers: str) -> Request:
    return Request(
        "GET",
        target,
        version="1.1",
        headers=headers,
        repeated=None,
        remote="192.0.2.7",
        keep_alive=True,
        started=time.perf_counter(),
    )


def test_the_specifications_example_is_read_whole() -> None:
    assert cmcd.from_query(SPEC_QUERY) == SPEC_REPORT


def test_media3_headers_are_read_together() -> None:
    report = cmcd.from_request(_request(**MEDIA3_HEADERS))
    assert report == CmcdReport(
        bitrate_kbps=160,
        buffer_ms=4200,
        throughput_kbps=2100,
        stalled=True,
        session_id="s-1",
        next_object="../t2/160",
        next_range=(262144, None),
    )


def test_booleans_strings_and_keys_of_other_versions() -> None:
    report = cmcd.parse('bs=?0,su=?1,sid="a, \\"quoted\\" \\\\ id",com.example-n=12,v2key=tok')
    assert (report.stalled, report.startup, report.session_id) == (
        False,
        True,
        'a, "quoted" \\ id',
    )
    assert report.ignored == frozenset()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('bl=2000,sid="unclosed', Problem.SYNTAX),
        ("bl=2000,,su", Problem.SYNTAX),  # an empty pair
        ("bl=2000,BR=1", Problem.SYNTAX),  # keys are lower-case
        ('bl=2000,x=a"b', Problem.SYNTAX),
        ('bl=2000,sid="tab\tin"', Problem.SYNTAX),  # strings are printable ASCII
        ('bl=2000,sid="\\n"', Problem.SYNTAX),  # only \" and \\ are escapes
        ("bl=2000,com.example-x=1 2", Problem.SYNTAX),
        ("bl=2000,br=fast", Problem.WRONG_TYPE),
        ("bl=2000,br", Problem.WRONG_TYPE),  # a bare key is a boolean
        ('bl=2000,br="160"', Problem.WRONG_TYPE),
        ("bl=2000,bs=1", Problem.WRONG_TYPE),
        ("bl=2000,sid=abc", Problem.WRONG_TYPE),  # a token, not a string
        ('bl=2000,ot="a"', Problem.WRONG_TYPE),
        ('bl=2000,nrr="x-1"', Problem.WRONG_TYPE),
        ("bl=2000,pr=fast", Problem.WRONG_TYPE),
        ("bl=2000,br=-160", Problem.OUT_OF_RANGE),
        ("bl=2000,mtp=1" + "0" * 15, Problem.OUT_OF_RANGE),  # more than 15 digits
        (f"bl=2000,br={cmcd_values.MAX_KBPS + 1}", Problem.OUT_OF_RANGE),
        (f"bl=2000,d={cmcd_values.MAX_MS + 1}", Problem.OUT_OF_RANGE),
        ("bl=2000,ot=zz", Problem.OUT_OF_RANGE),
        ('bl=2000,sid="' + "s" * 65 + '"', Problem.OUT_OF_RANGE),
        ('bl=2000,nrr="500-100"', Problem.OUT_OF_RANGE),
        ("bl=2000,pr=-1", Problem.OUT_OF_RANGE),
        ("bl=2000,bl=3000", Problem.DUPLICATE),  # the first stays
    ],
)
def test_each_malformed_value_is_ignored_and_its_reason_noted(text: str, problem: Problem) -> None:
    report = cmcd.parse(text)
    assert report.ignored == {problem}
    assert report.buffer_ms == 2000  # the rest of the report is kept


def test_the_list_is_bounded_before_and_after_decoding() -> None:
    custom = ",".join(f"com.example-k{n}=1" for n in range(40))  # keys of another version
    fits = f'bl=100,com.example-pad="{"x" * (cmcd.MAX_CHARS - len(custom) - 26)}",{custom}'
    assert len(fits) == cmcd.MAX_CHARS
    assert cmcd.parse(fits).buffer_ms == 100
    assert cmcd.parse(fits + "0").ignored == {Problem.TOO_LONG}
    assert cmcd.parse(fits + "0").buffer_ms is None  # nothing of it is read
    assert cmcd.from_query(quote(fits, safe="")).buffer_ms == 100
    assert cmcd.from_query("%2C" * (cmcd.MAX_CHARS + 1)).ignored == {Problem.TOO_LONG}
    long_header = {"cmcd-request": fits, "cmcd-status": "bs"}
    too_long = CmcdReport(ignored=frozenset({Problem.TOO_LONG}))
    assert cmcd.from_request(_request(**long_header)) == too_long
    many = ",".join(f"com.example-k{n}" for n in range(cmcd.MAX_PAIRS))
    assert cmcd.parse(many).ignored == frozenset()
    assert cmcd.parse(many + ",su").ignored == {Problem.TOO_LONG}


def test_headers_win_over_the_query_argument() -> None:
    target = f"/v1/tracks/t1/160?CMCD={quote('bl=1000,sid="query"', safe='')}"
    assert cmcd.from_request(_request(target)) == CmcdReport(buffer_ms=1000, session_id="query")
    both = cmcd.from_request(_request(target, **{"cmcd-session": 'sid="header"'}))
    assert both == CmcdReport(session_id="header")
    assert cmcd.from_request(_request("/v1/tracks/t1/160?exp=1")) is None


def test_a_header_sent_twice_is_one_list() -> None:
    request = Request(
        "GET",
        "/v1/tracks/t1/160",
        version="1.1",
        headers={"cmcd-request": "bl=100"},
        repeated={"cmcd-request": ["bl=100", "mtp=900"]},
        remote=None,
        keep_alive=True,
        started=0.0,
    )
    report = cmcd.from_request(request)
    assert report is not None
    assert (report.buffer_ms, report.throughput_kbps) == (100, 900)


def test_the_request_takes_the_cmcd_argument_out_of_its_query() -> None:
    signed = "/v1/tracks/t1/160?exp=1&kid=k1&sig=abc"
    plain = _request(signed)
    assert plain.cmcd is None
    for target in (
        f"{signed}&CMCD=bl%3D100",
        "/v1/tracks/t1/160?CMCD=bl%3D200&exp=1&kid=k1&sig=abc",
        f"{signed}&CMCD=bl%3D100&CMCD=bl%3D300",
    ):
        request = _request(target)
        assert request.query_string == plain.query_string  # the signed-URL memo's key
        assert request.target == target  # as sent
        assert request.cmcd is not None
    assert _request(f"{signed}&CMCD=bl%3D100&CMCD=bl%3D300").cmcd == "bl%3D100%2Cbl%3D300"
    assert cmcd.from_query("bl%3D100%2Cbl%3D300").ignored == {Problem.DUPLICATE}
    other = _request(f"{signed}&xCMCD=1")  # another argument that only ends the same
    assert (other.cmcd, other.query_string) == (None, "exp=1&kid=k1&sig=abc&xCMCD=1")


@given(st.text(alphabet='%0235ABCDF+a,="x/é ', max_size=40))
def test_the_fast_decoding_decodes_as_urllib(value: str) -> None:
    assert cmcd_values.decoded(value, plus=True) == unquote_plus(value)
    assert cmcd_values.decoded(value, plus=False) == unquote(value)


# Lists made of pieces that look like CMCD, and anything at all.
pieces = st.sampled_from(
    ["bl=", "br=", "bs", "su", "sid=", "nor=", "nrr=", "ot=", "pr=", '"', "\\", ",", "=", "-"]
)
texts = st.one_of(
    st.lists(st.one_of(pieces, st.text(max_size=6)), max_size=40).map("".join),
    st.text(max_size=300),
)


@given(texts)
def test_no_list_makes_the_parser_raise(text: str) -> None:
    report = cmcd.parse(text)
    assert report.ignored <= set(Problem)
    assert report.session_id is None or len(report.session_id) <= cmcd_values.MAX_STRING
    if report.next_range is not None:
        first, last = report.next_range
        assert last is None or first <= last


@given(texts, st.booleans())
def test_no_query_argument_or_header_makes_it_raise(text: str, as_header: bool) -> None:
    if as_header:
        cmcd.from_request(_request(**{"cmcd-request": text}))
    else:
        cmcd.from_query(quote(text, safe=""))
        cmcd.from_query(text)
