"""Rotating signing keys without a restart: on SIGHUP each worker reads its config file again
and takes the new ``[auth]`` section (keys, clock skew, longest lifetime, region binding).
Nothing else changes on a reload; other settings need a restart. A config that no longer loads
is logged and ignored, so a typo during a rotation never locks players out. Nor does a reload
silently open the node: one that would drop the last key while signed URLs are required is
refused (an ERROR line says why) unless the new config says ``auth.require_signatures =
false``. The supervisor passes SIGHUP on to its workers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from edge.access.checks import Access
from origin.settings import AuthSettings, ConfigError, load_settings

log = logging.getLogger(__name__)

RELOAD_SIGNAL = signal.SIGHUP


def ignore_reload_signal() -> None:
    """Until the event loop's handler is in place, a SIGHUP must not kill the process (its
    default action): called first thing in a worker or a single-process node."""
    signal.signal(RELOAD_SIGNAL, signal.SIG_IGN)


def reload_signing_keys(access: Access, config_path: Path) -> None:
    try:
        auth = load_settings(config_path).auth
    except ConfigError as exc:
        log.error("SIGHUP: keeping the current signing keys; the config does not load: %s", exc)
        return
    if access.signatures.required and not auth.signing_keys and auth.require_signatures is None:
        log.error(
            "SIGHUP: keeping the current signing keys: %s has none, which would stop requiring "
            "signed URLs; to turn them off on purpose, set auth.require_signatures = false",
            config_path,
        )
        return
    access.signatures.update(auth)
    kids = ", ".join(sorted(auth.signing_keys)) or "none (signed URLs no longer required)"
    log.info("SIGHUP: signing keys reloaded from %s: %s", config_path, kids)


def listen_for_reload(access: Access, config_path: Path, started_with: AuthSettings) -> None:
    """Reload on SIGHUP, from the running event loop (the main thread's). A SIGHUP that came
    while this worker was starting was ignored: if ``[auth]`` has changed since the settings
    it ``started_with`` were read, take the new one now."""
    asyncio.get_running_loop().add_signal_handler(
        RELOAD_SIGNAL, reload_signing_keys, access, config_path
    )
    try:
        current = load_settings(config_path).auth
    except ConfigError:
        return  # a broken config keeps the keys the worker started with, as a SIGHUP would
    if current != started_with:
        reload_signing_keys(access, config_path)
