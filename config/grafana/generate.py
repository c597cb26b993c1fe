"""Encore's Grafana dashboards as code (grafana-foundation-sdk): writes dashboards/*.json.

    .venv/bin/python config/grafana/generate.py          # rewrite the committed JSON
    .venv/bin/python config/grafana/generate.py --check  # exit 1 if the JSON is out of date

Two dashboards: a region overview and a node drill-down. Both have `datasource`, `region` and
`instance` variables; rates use `$__rate_interval`; every panel has a unit. Ratios come from the
recording rules in config/prometheus/rules/encore-recording.yml (names `level:metric:op`), so a
panel and an alert read the same series.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

HERE = Path(__file__).resolve().parent
# config/grafana is not a package: put this script's directory first on sys.path so that its
# sibling modules import the same way however it is run (as a script from any directory, even
# with -P or PYTHONSAFEPATH, or loaded by file path as the tests do).
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from node_drilldown import node_drilldown  # noqa: E402  (needs HERE on sys.path)
from region_overview import region_overview  # noqa: E402

OUT = HERE / "dashboards"


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed (sorted keys, so diffs stay small)."""
    boards = {
        "encore-region-overview.json": region_overview(),
        "encore-node.json": node_drilldown(),
    }
    return {
        name: json.dumps(board.build(), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
        for name, board in boards.items()
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render().items():
        path = OUT / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date: " + ", ".join(stale) + " (run config/grafana/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
