"""A slice folder shared by a node's workers: which worker a file belongs to, and the scan a
worker makes of the folder at startup (see :mod:`edge.cache.disk` for the claim markers)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.cache.slice_files import (
    CLAIMS_DIR,
    SLICES_DIR,
    TMP_DIR,
    claim_path,
    private_dir,
    tighten_dir,
)

NAME_BYTES = 16

Found = tuple[bytes, int, float]  # a slice file seen on disk: name, size, mtime


@dataclass(frozen=True, slots=True)
class Share:
    """Worker ``worker`` of ``workers`` processes sharing the folder ``root``."""

    root: Path
    worker: int
    workers: int

    @property
    def tmp_prefix(self) -> str:
        return f"w{self.worker}-"

    def owns(self, name: bytes) -> bool:
        """Whether a slice name hashes to this worker (its file needs no claim marker)."""
        return int.from_bytes(name[:4], "big") % self.workers == self.worker

    def others(self) -> Iterator[int]:
        return (other for other in range(self.workers) if other != self.worker)

    def scan(self) -> tuple[list[Found], list[bytes]]:
        """This worker's files, and the names its markers claim without a file (in a thread)."""
        private_dir(self.root)
        for folder in (SLICES_DIR, TMP_DIR, CLAIMS_DIR):
            tighten_dir(self.root / folder)
        for leftover in self._own_temp_files():
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        private_dir(self.root / SLICES_DIR)
        # The slices first, then the other workers' claims, then each file's size: a worker
        # makes its marker before its file and removes it after, so a file listed here whose
        # claim is not seen had none, or is gone by the time it is looked at.
        mine = []
        for bucket in os.scandir(self.root / SLICES_DIR):
            if bucket.is_dir():
                mine += [(n, e) for e in os.scandir(bucket.path) if (n := self._mine(e.name))]
        claimed = {n for other in self.others() for n in self._claimed_by(other) if self.owns(n)}
        found: list[Found] = []
        for name, entry in mine:
            if name not in claimed:
                with contextlib.suppress(FileNotFoundError):
                    stat = entry.stat()
                    found.append((name, stat.st_size, stat.st_mtime))
        unbacked = []
        slices = os.path.join(self.root, SLICES_DIR)
        for name in self._claimed_by(self.worker):
            if self.owns(name):  # made when there were more or fewer workers: not needed
                with contextlib.suppress(FileNotFoundError):
                    claim_path(self.root, self.worker, name).unlink()
                continue
            text = name.hex()
            try:
                stat = os.stat(os.path.join(slices, text[:2], text))
            except FileNotFoundError:
                unbacked.append(name)
            else:
                found.append((name, stat.st_size, stat.st_mtime))
        if self.worker == 0:
            self._delete_void_claims()
        return found, unbacked

    def _mine(self, file_name: str) -> bytes | None:
        """The slice name of a file in ``slices/``, if it hashes to this worker."""
        name = parse_name(file_name)
        return name if name is not None and self.owns(name) else None

    def _claimed_by(self, worker: int) -> list[bytes]:
        try:
            entries = list(os.scandir(self.root / CLAIMS_DIR / f"w{worker}"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [name for entry in entries if (name := parse_name(entry.name)) is not None]

    def _delete_void_claims(self) -> None:
        """Claim folders of worker numbers not in use any more."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(self.root / CLAIMS_DIR):
                number = entry.name[1:]
                if entry.name.startswith("w") and number.isdigit() and int(number) >= self.workers:
                    shutil.rmtree(entry.path, ignore_errors=True)

    def _own_temp_files(self) -> Iterator[Path]:
        tmp = self.root / TMP_DIR
        if tmp.is_dir():
            mine = f".{os.getpid()}"  # this process's own writes may have begun meanwhile
            yield from (p for p in tmp.glob(f"{self.tmp_prefix}*") if not p.name.endswith(mine))


def parse_name(file_name: str) -> bytes | None:
    """The 16-byte name a slice file or claim marker is named by, in hex (else not ours)."""
    if len(file_name) != 2 * NAME_BYTES:
        return None
    try:
        return bytes.fromhex(file_name)
    except ValueError:
        return None
