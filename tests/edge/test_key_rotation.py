"""Key rotation without downtime on a real node: add a key, SIGHUP, sign with it; remove the
old key, SIGHUP; requests keep being served throughout, and a config that does not load
leaves the keys as they were."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from edge.signing import signed_query
from tests.conftest import Catalog
from tests.support.edge_node import Node

OLD, NEW = "old-secret-0123456789", "new-secret-9876543210"


def _auth(keys: dict[str, str]) -> str:
    table = ", ".join(f'{kid} = "{secret}"' for kid, secret in keys.items())
    return f"[auth]\nsigning_keys = {{ {table} }}\n"


def _reconfigure(node: Node, keys: dict[str, str] | None, *, broken: bool = False) -> None:
    text = node.config.read_text()
    text = text[: text.index("[auth]")] if "[auth]" in text else text
    if keys is not None:
        text += _auth(keys)
    if broken:
        text += "[auth]\nclock_skew_s = 'soon'\n"
    node.config.write_text(text)
    node.process.send_signal(signal.SIGHUP)


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

    _reconfigure(node, {"k-old": OLD, "k-new": NEW})  # 1: both keys
    _until(node, with_new, 200)
    assert node.status(with_old) == 200

    _reconfigure(node, {"k-new": NEW}, broken=True)  # a typo: nothing changes
    time.sleep(1)
    assert (node.status(with_old), node.status(with_new)) == (200, 200)

    _reconfigure(node, {"k-new": NEW})  # 2: the old key retired
    _until(node, with_old, 403)
    assert node.status(with_new) == 200
    assert node.process.pid == pid
    assert node.process.poll() is None  # the same node throughout
