"""Byte hit ratio of the cache policies against plain LRU and Belady, on synthetic workloads.

For each workload (see ``loadtests.tracegen``) and cache size (a share of the trace's slice
footprint), every policy replays the same slice accesses through ``edge.tools.simulate``, the code
``encore-edge simulate`` runs. The default policy must beat LRU by at least 3 points of byte
hit ratio wherever there are one-hit wonders, and be at most 1 point worse on the
recency-heavy workload; Belady (offline optimal) shows the headroom left.

    python -m loadtests.bench_policies [--plays 300000] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections import Counter
from dataclasses import replace

from edge.tools.simulate import BELADY, simulate, slice_accesses
from edge.tools.traces import parse_trace
from loadtests.tracegen import Workload, generate
from origin.settings import DEFAULT_POLICY, POLICIES

SLICE_BYTES = 256 * 1024
SHARES = (0.01, 0.10)
WORKLOADS = {
    "zipf-0.8": Workload(kind="zipf", alpha=0.8, one_hit_share=0.05, catalogue=20_000),
    "zipf-1.0": Workload(kind="zipf", alpha=1.0, one_hit_share=0.03, catalogue=20_000),
    "zipf-0.7": Workload(kind="zipf", alpha=0.7, one_hit_share=0.10, catalogue=20_000),
    "recency": Workload(kind="recency", one_hit_share=0.10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, default=300_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = []
    for name, base in WORKLOADS.items():
        workload = replace(base, plays=args.plays)
        text = io.StringIO()
        generate(workload, text)
        trace = parse_trace(text.getvalue().splitlines())
        plays_per_object = Counter(trace.key_ids)
        one_hit = sum(1 for n in plays_per_object.values() if n == 1) / len(plays_per_object)
        accesses = slice_accesses(trace, SLICE_BYTES)
        footprint = accesses.footprint
        for share in SHARES:
            row: dict[str, object] = {
                "workload": name,
                "one_hit_wonders": round(one_hit, 3),
                "share": share,
                "cache_bytes": int(footprint * share),
            }
            for policy in (*POLICIES, BELADY):
                started = time.perf_counter()
                result = simulate(accesses, policy, int(footprint * share))
                row[policy] = round(result.byte_hit_ratio, 4)
                row[f"{policy}_s"] = round(time.perf_counter() - started, 1)
            gain = (float(row[DEFAULT_POLICY]) - float(row["lru"])) * 100  # type: ignore[arg-type]
            row["gain_points"] = round(gain, 2)
            row["meets_goal"] = gain >= -1 if workload.kind == "recency" else gain >= 3
            report.append(row)
            if not args.json:
                print(
                    f"{name:<9} one-hit {one_hit:.0%}  cache {share:>4.0%}  "
                    f"lru {row['lru']:.4f}  {DEFAULT_POLICY} {row[DEFAULT_POLICY]:.4f}  "
                    f"belady {row[BELADY]:.4f}  gain {gain:+.2f} pts  "
                    f"{'ok' if row['meets_goal'] else 'MISSES GOAL'}",
                    flush=True,
                )
    if args.json:
        print(
            json.dumps({"slice_bytes": SLICE_BYTES, "plays": args.plays, "rows": report}, indent=2)
        )


if __name__ == "__main__":
    main()
