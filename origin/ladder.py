"""The bitrate ladder: which renditions ingest makes, and how ffmpeg encodes each codec.

A rung is written ``CODEC:KBPS`` (named after its bitrate, e.g. ``96``) or ``NAME=CODEC:KBPS``.
The default ladder is Ogg Vorbis at 96, 160 and 320 kbps; Opus is the second codec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from origin import layout

DEFAULT_LADDER = ("vorbis:96", "vorbis:160", "vorbis:320")
MAX_RUNGS = 8


@dataclass(frozen=True, slots=True)
class Codec:
    name: str
    encoder: str  # ffmpeg encoder
    extension: str
    content_type: str
    sample_rate: int  # every rung of a codec is resampled to this rate
    min_kbps: int
    max_kbps: int
    options: tuple[str, ...]  # encoder options, given the nominal bitrate

    def encoder_args(self, kbps: int) -> list[str]:
        return [
            arg.format(kbps=kbps, low=kbps * 9 // 10, high=kbps * 11 // 10) for arg in self.options
        ]


CODECS = {
    codec.name: codec
    for codec in (
        Codec(
            name="vorbis",
            encoder="libvorbis",
            extension="ogg",
            content_type="audio/ogg; codecs=vorbis",
            sample_rate=44_100,
            min_kbps=64,
            max_kbps=500,
            # Managed bitrate held within +-10% of nominal: plain ABR lands far below nominal
            # on simple material, and a ladder rung should cost what it says.
            options=("-b:a", "{kbps}k", "-minrate", "{low}k", "-maxrate", "{high}k"),
        ),
        Codec(
            name="opus",
            encoder="libopus",
            extension="opus",
            content_type="audio/ogg; codecs=opus",
            sample_rate=48_000,  # Opus runs at 48 kHz internally
            min_kbps=16,
            max_kbps=510,
            options=("-b:a", "{kbps}k", "-vbr", "constrained"),
        ),
    )
}

_RUNG = re.compile(r"(?:(?P<name>[^=]+)=)?(?P<codec>[a-z0-9]+):(?P<kbps>\d{1,4})")


@dataclass(frozen=True, slots=True)
class Rung:
    name: str
    codec: Codec
    kbps: int

    @property
    def spec(self) -> str:
        return f"{self.name}={self.codec.name}:{self.kbps}"


def parse_rung(text: str) -> Rung:
    match = _RUNG.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a rung such as vorbis:96 or hq=opus:128")
    codec = CODECS.get(match["codec"])
    if codec is None:
        raise ValueError(f"{text!r}: unknown codec (known: {', '.join(CODECS)})")
    kbps = int(match["kbps"])
    if not codec.min_kbps <= kbps <= codec.max_kbps:
        raise ValueError(f"{text!r}: {codec.name} takes {codec.min_kbps} to {codec.max_kbps} kbps")
    name = match["name"] or str(kbps)
    if not layout.is_rendition_name(name):
        raise ValueError(f"{text!r}: rendition names are 1-32 of A-Z a-z 0-9 _ -")
    return Rung(name, codec, kbps)


def parse_ladder(specs: Iterable[str]) -> tuple[Rung, ...]:
    rungs = tuple(parse_rung(spec) for spec in specs)
    if not 1 <= len(rungs) <= MAX_RUNGS:
        raise ValueError(f"a ladder has 1 to {MAX_RUNGS} rungs, got {len(rungs)}")
    names = [rung.name for rung in rungs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"two rungs are named {name!r}; name them: NAME=CODEC:KBPS")
    return rungs
