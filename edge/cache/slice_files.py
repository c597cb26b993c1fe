"""Slice files of the disk tier: one file per slice, written atomically, verified when read.

A file is a small header (magic, format version, the slice's key and index, the data length
and its CRC-32) followed by the data. It is written to a temporary file and linked into
place, so a reader sees either no file or a whole one; a file damaged later (a bad disk, a
truncation, a crash before the data reached the disk) fails verification and is never served.
Verification means the CRC whenever the bytes come from the device; a re-read of a file the
reader verified before, with the same identity (inode, size, mtime) and wholly in the page
cache, checks the header only (:func:`read_cached`): those are the bytes already checked.

File names are a hash of (object key, slice size, index): any process finds a slice's file
without an index, and a change of ``cache.slice_bytes`` never mixes slicings.

The folder is private: files are created 0600 and folders 0700, set explicitly, so neither
the process umask nor an older install's modes decide who can read cached audio.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path

# A slice's bytes as the tiers hold them: from the origin, bytes; from a slice file, a view
# into the file's bytes past its header (no second copy).
type SliceData = bytes | memoryview
# What changes when anyone rewrites, replaces or truncates a file: inode, size, mtime (ns).
type Identity = tuple[int, int, int]
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)
# Until the kernel or the file system says it cannot (then empty): a read may try NOWAIT.
_NOWAIT_WORKS = [True] if _NOWAIT else []

MAGIC = b"ENCS"
VERSION = 1
_HEADER = struct.Struct("<4sBxHQII")  # magic, version, key length, index, data length, crc32
SLICES_DIR = "slices"
TMP_DIR = "tmp"
CLAIMS_DIR = "claims"  # claims/w{worker}/{name hex}: see edge.cache.disk
FILE_MODE = 0o600
DIR_MODE = 0o700
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_MARKER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC


def slice_name(object_key: str, slice_bytes: int, index: int) -> bytes:
    """16 bytes: compact enough to be the disk index's key; in hex, the file's name."""
    digest = hashlib.blake2b(f"{object_key}\0{slice_bytes}\0{index}".encode(), digest_size=16)
    return digest.digest()


def slice_path(root: Path, name: bytes) -> Path:
    return Path(slice_file(os.path.join(root, SLICES_DIR), name))


def slice_file(slices_dir: str, name: bytes) -> str:
    """:func:`slice_path` under ``slices_dir`` (the root's ``slices``), as a string: a disk
    hit builds no :class:`Path` (whose parsing cost a tenth of one)."""
    text = name.hex()
    return f"{slices_dir}/{text[:2]}/{text}"


def claim_path(root: Path, worker: int, name: bytes) -> Path:
    return root / CLAIMS_DIR / f"w{worker}" / name.hex()


def private_dir(path: Path) -> None:
    """Create ``path``, and any missing folder above it, mode 0700 exactly."""
    missing = []
    while not os.path.lexists(path) and path.parent != path:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # another worker made it (and sets its mode)
        os.chmod(folder, DIR_MODE)  # the umask may have narrowed it


def tighten_dir(path: Path) -> None:
    """Make an existing folder 0700 if others can reach it (an older install made it 0755);
    the files inside then need no change of their own."""
    with contextlib.suppress(FileNotFoundError):
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode) and stat.S_IMODE(mode) != DIR_MODE:
            os.chmod(path, DIR_MODE)


def make_marker(path: Path) -> None:
    """An empty file at ``path``, 0600 (only its name matters; it is never opened again, so
    the umask can narrow its mode but never widen it)."""
    try:
        fd = os.open(path, _MARKER_FLAGS, FILE_MODE)
    except FileNotFoundError:
        private_dir(path.parent)
        fd = os.open(path, _MARKER_FLAGS, FILE_MODE)
    os.close(fd)


def encode(object_key: str, index: int, data: bytes) -> bytes:
    key = object_key.encode()
    header = _HEADER.pack(MAGIC, VERSION, len(key), index, len(data), zlib.crc32(data))
    return header + key + data


def decode(
    raw: bytes | bytearray,
    object_key: str,
    index: int,
    expected_length: int,
    *,
    checksum: bool = True,
) -> SliceData | None:
    """The data, if ``raw`` is a whole, undamaged file of exactly this slice; else None. A
    view into ``raw``: the file's bytes are copied into user space once, by the read.
    ``checksum`` False: the header is checked, not the CRC (see :func:`read_cached`)."""
    if len(raw) < _HEADER.size:
        return None
    magic, version, key_length, stored_index, length, crc = _HEADER.unpack_from(raw)
    key_end = _HEADER.size + key_length
    if (
        magic != MAGIC
        or version != VERSION
        or stored_index != index
        or length != expected_length
        or len(raw) != key_end + length
        or raw[_HEADER.size : key_end] != object_key.encode()
    ):
        return None
    data = memoryview(raw)[key_end:]
    return data if not checksum or zlib.crc32(data) == crc else None


def write_atomically(
    root: Path, name: bytes, blob: bytes, tmp_prefix: str, claim: Path | None = None
) -> bool:
    """Write ``blob`` as the slice file ``name``: a temporary file, then a hard link. With
    ``claim``, that marker is made just before the link, and removed unless the link is made
    (a crash between the two leaves a marker without a file, never a file without its claim).

    False, leaving the file alone, if it exists already. A link (unlike a rename) fails
    atomically on an existing file, so of two workers racing to write one slice exactly
    one wins and the other learns that it fetched a duplicate."""
    final = slice_path(root, name)
    tmp = root / TMP_DIR / f"{tmp_prefix}{name.hex()}.{os.getpid()}"
    try:
        fd = os.open(tmp, _TMP_FLAGS, FILE_MODE)
    except FileNotFoundError:  # the first write, or the folder was deleted
        private_dir(tmp.parent)
        fd = os.open(tmp, _TMP_FLAGS, FILE_MODE)
    linked = False
    try:
        with open(fd, "wb") as fh:
            # Exact, whatever the umask or the mode of a leftover file of this name; the
            # slice file is this same inode.
            os.fchmod(fd, FILE_MODE)
            fh.write(blob)
        if claim is not None:
            make_marker(claim)
        try:
            os.link(tmp, final)
        except FileNotFoundError:
            private_dir(final.parent)
            os.link(tmp, final)
        linked = True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):  # a leftover is cleared at the next start
            tmp.unlink()
        if claim is not None and not linked:
            with contextlib.suppress(OSError):
                claim.unlink()
    return True


def read_with_identity(path: str | Path) -> tuple[bytearray, Identity] | None:
    """A file's bytes and identity, None if there is no such file (may wait on the disk)."""
    return _read(path, 0)


def read_cached(path: str | Path) -> tuple[bytearray, Identity] | None:
    """As :func:`read_with_identity`, from the page cache only: ``BlockingIOError`` if any
    of the file would have to come from the device (``RWF_NOWAIT``), or where the kernel or
    the file system cannot tell. A file whose checksum this process verified when it was
    read from the device, and whose identity is the same, is served from the page cache
    without computing its CRC again (a CRC-32 of a slice costs more than the rest of a
    disk hit); whatever comes from the device is verified."""
    if not _NOWAIT_WORKS:
        raise BlockingIOError
    try:
        return _read(path, _NOWAIT)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            _NOWAIT_WORKS.clear()
            raise BlockingIOError from exc
        raise


def _read(path: str | Path, flags: int) -> tuple[bytearray, Identity] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        info = os.fstat(fd)
        buffer = bytearray(info.st_size)
        done = 0
        with memoryview(buffer) as view:
            while done < len(buffer):
                got = os.preadv(fd, [view[done:]], done, flags)
                if got == 0:  # shorter than it was a moment ago
                    break
                if flags and got < len(buffer) - done:
                    raise BlockingIOError  # the rest is not in the page cache
                done += got
        del buffer[done:]
        return buffer, (info.st_ino, info.st_size, info.st_mtime_ns)
    finally:
        os.close(fd)


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
