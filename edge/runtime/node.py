"""Run an edge node: one worker in this process, or a supervisor of several."""

from __future__ import annotations

from pathlib import Path

from edge.access.key_reload import ignore_reload_signal
from edge.runtime.supervisor import Supervisor, worker_count
from edge.runtime.worker import run_worker
from origin.settings import Settings


def serve(settings: Settings, *, print_urls: bool = True, config_path: Path | None = None) -> None:
    """Run the node; with ``config_path``, SIGHUP reloads the signing keys from it."""
    count = worker_count(settings)
    if count > 1:
        Supervisor(settings, count, config_path=config_path).run(print_urls=print_urls)
        return
    ignore_reload_signal()
    banner = "======== Running on {url} ========" if print_urls else None
    run_worker(settings, 0, 1, None, config_path, reuse_port=False, banner=banner)
