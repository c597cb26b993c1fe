"""Key rotation without downtime on a real node: add a key, SIGHUP, sign with it; remove the
old key, SIGHUP; requests keep being served throughout, and a config that does not load
leaves the keys as they were. A reload never opens the node by accident: dropping the last key
is refused unless the new config says ``require_signatures = false``; ``/admin/stats`` tells
what each worker now requires."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from edge.access.signing import signed_query
from origin.local_s3 import free_port
from tests.conftest import Catalog
from tests.support.admin_client import admin_request
from tests.support.edge_node import Node

OLD, NEW = "old-secret-0123456789", "new-secret-9876543210"


def _auth(keys: dict[str, str]) -> str:
    table = ", ".join(f'{kid} = "{secret}"' for kid, secret in keys.items())
    return f"[auth]\nsigning_keys = {{ {table} }}\n"


RELOAD_LINE = "edge.access.key_reload: SIGHUP: "
ADMIN_TOKEN = "rotation-admin-token-0123"


def _reload_lines(node: Node) -> list[str]:
    return [line for line in node.log.read_text().splitlines() if RELOAD_LINE in line]


def _reload(node: Node, auth_toml: str, workers: int, timeout_s: float = 15) -> list[str]:
    """Replace the config's ``[auth]`` section with ``auth_toml``, SIGHUP the node, and wait
    until every worker has logged how its reload went: those lines."""
    seen = len(_reload_lines(node))
    text = node.config.read_text()
    text = text[: text.index("[auth]")] if "[auth]" in text else text
    node.config.write_text(text + auth_toml)
    node.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while len(lines := _reload_lines(node)) < seen + workers:
        assert time.monotonic() < deadline, f"not every worker reloaded: {lines[seen:]}"
        time.sleep(0.02)
    return lines[seen:]


def _statuses(node: Node, url: str, headers: dict[str, str] | None = None) -> set[int]:
    """Statuses of 10 GETs on fresh connections (the kernel spreads them over the workers)."""
    return {node.status(url, headers) for _ in range(10)}


def _until(node: Node, url: str, status: int, timeout_s: float = 15) -> None:
    """Fresh connections (any worker) until ``url`` gives ``status`` 10 times in a row."""
    deadline, streak = time.monotonic() + timeout_s, 0
    while streak < 10:
        assert time.monotonic() < deadline, f"{url} never settled on {status}"
        streak = streak + 1 if node.status(url) == status else 0


@pytest.mark.parametrize("workers", [1, 2])
def test_signing_keys_rotate_on_sighup_without_a_restart(
    catalog: Catalog, start_node: Callable[..., Node], workers: int
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    exp = int(time.time()) + 600
    with_old = f"{path}?{signed_query(OLD, 'k-old', path, exp)}"
    with_new = f"{path}?{signed_query(NEW, 'k-new', path, exp)}"
    node = start_node(workers=workers, extra_toml=_auth({"k-old": OLD}))
    pid = node.process.pid
    assert (node.status(with_old), node.status(with_new)) == (200, 403)

    _reload(node, _auth({"k-old": OLD, "k-new": NEW}), workers)  # 1: both keys
    _until(node, with_new, 200)
    assert node.status(with_old) == 200

    typo = _auth({"k-new": NEW}) + "[auth]\nclock_skew_s = 'soon'\n"  # nothing changes
    lines = _reload(node, typo, workers)
    assert all(" ERROR " in line and "the config does not load" in line for line in lines)
    assert (node.status(with_old), node.status(with_new)) == (200, 200)

    _reload(node, _auth({"k-new": NEW}), workers)  # 2: the old key retired
    _until(node, with_old, 403)
    assert node.status(with_new) == 200
    assert node.process.pid == pid
    assert node.process.poll() is None  # the same node throughout


def test_a_reload_that_would_drop_the_last_key_is_refused(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    manifest = catalog.publish({"160": os.urandom(1000)})
    path = f"/v1/tracks/{manifest.track_id}/160"
    signed = f"{path}?{signed_query(NEW, 'k-new', path, int(time.time()) + 600)}"
    node = start_node(workers=2, extra_toml=_auth({"k-new": NEW}))
    assert (node.status(path), node.status(signed)) == (403, 200)

    for no_keys in ("", "[auth]\nsigning_keys = {}\n", "[auth]\nclock_skew_s = 10\n"):
        lines = _reload(node, no_keys, workers=2)
        for line in lines:
            assert " ERROR " in line, line
            assert "keeping the current signing keys" in line
            assert "auth.require_signatures = false" in line  # how to do it on purpose
        assert _statuses(node, path) == {403}  # still closed to unsigned requests
        assert _statuses(node, signed) == {200}  # and the old key still works
    assert node.process.poll() is None


def test_require_signatures_false_turns_signed_urls_off_on_a_reload(
    catalog: Catalog, start_node: Callable[..., Node]
) -> None:
    data = os.urandom(1000)
    manifest = catalog.publish({"160": data})
    path = f"/v1/tracks/{manifest.track_id}/160"
    node = start_node(workers=2, extra_toml=_auth({"k-new": NEW}))
    assert node.status(path) == 403

    lines = _reload(node, "[auth]\nrequire_signatures = false\n", workers=2)
    assert all(" INFO " in line and "signed URLs no longer required" in line for line in lines)
    _until(node, path, 200)
    assert _statuses(node, path, {"Range": "bytes=0-9"}) == {206}
    assert node.get(path)[1] == data


def test_admin_stats_say_whether_signed_urls_are_required_as_reloaded(
    start_node: Callable[..., Node],
) -> None:
    port = free_port()
    admin = f'[admin]\nport = {port}\ntoken = "{ADMIN_TOKEN}"\n'
    node = start_node(workers=2, extra_toml=admin)

    def required() -> set[bool]:
        """What the workers answering 10 stats requests say."""
        answers = [admin_request(port, "/admin/stats", None, ADMIN_TOKEN) for _ in range(10)]
        assert {status for status, _ in answers} == {200}
        return {bool(stats["signed_urls_required"]) for _, stats in answers}

    def until_required(expected: bool, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while (said := required()) != {expected}:
            assert time.monotonic() < deadline, f"stats say {said}, not {expected}"

    assert required() == {False}
    _reload(node, _auth({"k-new": NEW}), workers=2)  # keys added: required from now on
    until_required(True)
    _reload(node, "[auth]\nrequire_signatures = false\n", workers=2)
    until_required(False)
