"""`./dev test` installs Debian's prometheus package (for promtool) when promtool is missing:
its `need_promtool` step, run with stand-ins for apt-get and id on a PATH without promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.config import artifacts

DEV = artifacts.REPO / "dev"


def _need_promtool() -> str:
    match = re.search(r"^need_promtool\(\) \{\n.*?^\}\n", DEV.read_text(), re.S | re.M)
    assert match, "dev has no need_promtool function"
    return match[0]


def _run(tmp_path: Path, *, with_promtool: bool) -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    stubs = {
        # Records its arguments and the environment it saw; reads stdin to show it gets none.
        "apt-get": f'echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "{calls}"; /bin/cat >/dev/null',
        "id": "echo 0",  # root, as on CI: no sudo
        "tail": 'exec /usr/bin/tail "$@"',
    }
    if with_promtool:
        stubs["promtool"] = "exit 0"
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    script = f'set -euo pipefail\nVENV="{tmp_path}"\n{_need_promtool()}need_promtool\n'
    result = subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": str(bin_dir), "CI": "true"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode, calls.read_text() if calls.exists() else "", result.stderr.decode()


def test_a_missing_promtool_is_installed_from_debian_non_interactively(tmp_path: Path) -> None:
    status, calls, stderr = _run(tmp_path, with_promtool=False)
    assert status == 0, stderr
    update, install = calls.splitlines()
    assert update == "DEBIAN_FRONTEND= update -qq"
    assert install == (
        "DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends prometheus"
    )
    assert "installing Debian's prometheus package" in stderr


def test_nothing_is_installed_when_promtool_is_there(tmp_path: Path) -> None:
    status, calls, stderr = _run(tmp_path, with_promtool=True)
    assert status == 0, stderr
    assert calls == ""
    assert stderr == ""


def test_dev_test_runs_the_step_before_the_tests() -> None:
    text = DEV.read_text()
    test_branch = text[text.index("    test)") :]
    assert test_branch.index("need_promtool") < test_branch.index('"$VENV/bin/pytest"')
