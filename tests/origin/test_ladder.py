from __future__ import annotations

import pytest

from origin.ladder import DEFAULT_LADDER, parse_ladder, parse_rung
from origin.settings import ConfigError, load_settings


def test_default_ladder_is_vorbis_96_160_320() -> None:
    rungs = load_settings(None, env={}).ingest.ladder
    assert [(r.name, r.codec.name, r.kbps) for r in rungs] == [
        ("96", "vorbis", 96),
        ("160", "vorbis", 160),
        ("320", "vorbis", 320),
    ]
    assert rungs == parse_ladder(DEFAULT_LADDER)


def test_rungs_take_a_name_and_opus() -> None:
    rung = parse_rung("hq=opus:128")
    assert (rung.name, rung.codec.name, rung.kbps, rung.codec.extension) == (
        "hq",
        "opus",
        128,
        "opus",
    )
    assert rung.spec == "hq=opus:128"
    assert "-vbr" in rung.codec.encoder_args(128)
    vorbis = parse_rung("vorbis:160")
    assert vorbis.codec.encoder_args(160) == [
        "-b:a",
        "160k",
        "-minrate",
        "144k",
        "-maxrate",
        "176k",
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["mp3:128"], "unknown codec"),
        (["vorbis:20"], "vorbis takes 64 to 500 kbps"),
        (["opus:600"], "opus takes 16 to 510 kbps"),
        (["vorbis"], "is not a rung"),
        (["../x=vorbis:96"], "rendition names"),
        (["vorbis:96", "opus:96"], "two rungs are named '96'"),
        ([], "1 to 8 rungs"),
        ([f"r{n}=opus:64" for n in range(9)], "1 to 8 rungs"),
    ],
)
def test_bad_ladders_say_why(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ladder(specs)


def test_ladder_from_config_and_env() -> None:
    settings = load_settings(None, env={"ENCORE_INGEST__LADDER": '["vorbis:128", "opus:64"]'})
    assert [r.spec for r in settings.ingest.ladder] == ["128=vorbis:128", "64=opus:64"]
    short = load_settings(None, env={"ENCORE_INGEST__LADDER": "vorbis:128, lo=opus:32"})
    assert [r.spec for r in short.ingest.ladder] == ["128=vorbis:128", "lo=opus:32"]
    with pytest.raises(
        ConfigError, match=r"ENCORE_INGEST__LADDER \(ingest.ladder\): .*unknown codec"
    ):
        load_settings(None, env={"ENCORE_INGEST__LADDER": '["aac:128"]'})
    with pytest.raises(ConfigError, match=r"\(ingest\.part_bytes\): must be between 5242880"):
        load_settings(None, env={"ENCORE_INGEST__PART_BYTES": "1MiB"})
