"""``encore-edge simulate``: the command around ``edge.tools.simulate`` (arguments, sizes,
output)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from edge.tools.simulate import BELADY, simulate, slice_accesses
from edge.tools.traces import read_trace
from origin.settings import DEFAULT_POLICY, POLICIES
from origin.sizes import format_size, parse_size


class SimulateError(ValueError):
    """A bad argument, said in one line."""


def parse_policies(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = (*POLICIES, BELADY)
    for name in names:
        if name not in known:
            raise SimulateError(f"unknown policy {name!r} (known: {', '.join(known)})")
    if not names:
        raise SimulateError("--policy needs at least one policy")
    return names


def parse_cache_sizes(text: str, footprint: int) -> list[int]:
    """``512MiB,20GB,1%``: bytes, or a share of the trace's footprint."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        if item.endswith("%"):
            try:
                share = float(item[:-1])
            except ValueError:
                raise SimulateError(f"{item!r} is not a percentage such as 1%") from None
            if not 0 < share <= 100:
                raise SimulateError(
                    f"{item!r}: a share of the footprint is above 0% and at most 100%"
                )
            sizes.append(int(footprint * share / 100))
        else:
            try:
                sizes.append(parse_size(item))
            except ValueError as exc:
                raise SimulateError(f"--cache-size: {exc}") from None
    return sizes


def check_cache_sizes(text: str) -> None:
    """Fail on a bad --cache-size before the trace is read (the footprint is not known yet)."""
    parse_cache_sizes(text, footprint=1)


def run(trace_path: Path, cache_sizes: str, policies: str, slice_bytes: int, as_json: bool) -> None:
    names = parse_policies(policies)
    check_cache_sizes(cache_sizes)
    trace = read_trace(trace_path)
    accesses = slice_accesses(trace, slice_bytes)
    footprint = accesses.footprint
    results = [
        simulate(accesses, policy, size)
        for size in parse_cache_sizes(cache_sizes, footprint)
        for policy in names
    ]
    if as_json:
        print(
            json.dumps(
                {
                    "default_policy": DEFAULT_POLICY,
                    "results": [asdict(result) for result in results],
                    "requests": len(trace),
                    "slice_lookups": len(accesses.keys),
                    "footprint_bytes": footprint,
                    "skipped_lines": trace.skipped,
                },
                indent=2,
            )
        )
        return
    print(
        f"{trace_path}: {len(trace)} requests, {len(accesses.keys)} slice lookups of "
        f"{format_size(slice_bytes)}, footprint {format_size(footprint)}"
    )
    if trace.skipped:
        print(f"skipped {trace.skipped} lines that cannot be replayed ({trace.first_problem})")
    print(f"{'POLICY':<8} {'CACHE':>10} {'OBJECT HIT':>11} {'BYTE HIT':>9}")
    for result in results:
        marker = "  (default)" if result.policy == DEFAULT_POLICY else ""
        print(
            f"{result.policy:<8} {format_size(result.cache_bytes):>10} "
            f"{result.object_hit_ratio:>11.4f} {result.byte_hit_ratio:>9.4f}{marker}"
        )
