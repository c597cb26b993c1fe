"""Slice files of the disk tier: one file per slice, written atomically, verified when read.

A file is a small header (magic, format version, the slice's key and index, the data length
and its CRC-32) followed by the data. It is written to a temporary file and linked into
place, so a reader sees either no file or a whole one; a file damaged later (a bad disk, a
truncation, a crash before the data reached the disk) fails verification and is never served.

File names are a hash of (object key, slice size, index): any process finds a slice's file
without an index, and a change of ``cache.slice_bytes`` never mixes slicings.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

MAGIC = b"ENCS"
VERSION = 1
_HEADER = struct.Struct("<4sBxHQII")  # magic, version, key length, index, data length, crc32
SLICES_DIR = "slices"
TMP_DIR = "tmp"


def slice_name(object_key: str, slice_bytes: int, index: int) -> bytes:
    """16 bytes: compact enough to be the disk index's key; in hex, the file's name."""
    digest = hashlib.blake2b(f"{object_key}\0{slice_bytes}\0{index}".encode(), digest_size=16)
    return digest.digest()


def slice_path(root: Path, name: bytes) -> Path:
    text = name.hex()
    return root / SLICES_DIR / text[:2] / text


def encode(object_key: str, index: int, data: bytes) -> bytes:
    key = object_key.encode()
    header = _HEADER.pack(MAGIC, VERSION, len(key), index, len(data), zlib.crc32(data))
    return header + key + data


def decode(raw: bytes, object_key: str, index: int, expected_length: int) -> bytes | None:
    """The data, if ``raw`` is a whole, undamaged file of exactly this slice; else None."""
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
    data = raw[key_end:]
    return data if zlib.crc32(data) == crc else None


def write_atomically(root: Path, name: bytes, blob: bytes, tmp_prefix: str) -> bool:
    """Write ``blob`` as the slice file ``name``: a temporary file, then a hard link.

    False, leaving the file alone, if it exists already. A link (unlike a rename) fails
    atomically on an existing file, so of two workers racing to write one slice exactly
    one wins and the other learns that it fetched a duplicate."""
    final = slice_path(root, name)
    tmp = root / TMP_DIR / f"{tmp_prefix}{name.hex()}.{os.getpid()}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as fh:
        fh.write(blob)
    try:
        try:
            os.link(tmp, final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(tmp, final)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def read_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
