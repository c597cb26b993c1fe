"""The slice file format: what verification accepts and what it refuses."""

from __future__ import annotations

import os
from pathlib import Path

from edge.slice_files import decode, encode, slice_name, slice_path, write_atomically


def test_round_trip() -> None:
    data = os.urandom(1000)
    assert decode(encode("tracks/t/96-x.ogg", 3, data), "tracks/t/96-x.ogg", 3, 1000) == data


def test_refuses_anything_but_this_exact_slice() -> None:
    data = os.urandom(1000)
    blob = encode("key-a", 3, data)
    flipped = bytearray(blob)
    flipped[-1] ^= 0xFF
    assert decode(blob, "key-b", 3, 1000) is None  # another object's slice
    assert decode(blob, "key-a", 4, 1000) is None  # another slice of the object
    assert decode(blob, "key-a", 3, 999) is None  # not the length the manifest implies
    assert decode(blob[:-1], "key-a", 3, 1000) is None  # truncated
    assert decode(blob + b"x", "key-a", 3, 1000) is None  # overlong
    assert decode(bytes(flipped), "key-a", 3, 1000) is None  # damaged
    assert decode(b"", "key-a", 3, 1000) is None


def test_names_depend_on_key_slice_size_and_index() -> None:
    names = {
        slice_name("k", 262_144, 0),
        slice_name("k", 262_144, 1),
        slice_name("k", 131_072, 0),
        slice_name("k2", 262_144, 0),
    }
    assert len(names) == 4
    assert all(len(name) == 16 for name in names)


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    name = slice_name("k", 1000, 0)
    write_atomically(tmp_path, name, b"blob", "w0-")
    assert slice_path(tmp_path, name).read_bytes() == b"blob"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_atomic_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    name = slice_name("k", 1000, 0)
    assert write_atomically(tmp_path, name, b"first", "w0-")
    assert not write_atomically(tmp_path, name, b"second", "w1-")
    assert slice_path(tmp_path, name).read_bytes() == b"first"
    assert list((tmp_path / "tmp").iterdir()) == []
