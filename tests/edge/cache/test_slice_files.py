"""The slice file format: what verification accepts and what it refuses; atomic, private
writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge.cache import slice_files
from edge.cache.slice_files import (
    claim_path,
    decode,
    encode,
    slice_name,
    slice_path,
    tighten_dir,
    write_atomically,
)


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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_files_are_0600_and_folders_0700_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    root = tmp_path / "cache"
    name = slice_name("k", 1000, 0)
    claim = claim_path(root, 1, name)
    previous = os.umask(umask)
    try:
        assert write_atomically(root, name, b"blob", "w1-", claim)
    finally:
        os.umask(previous)
    folders = [root, root / "tmp", root / "slices", slice_path(root, name).parent]
    folders += [root / "claims", claim.parent]
    assert [oct(_mode(p)) for p in folders] == [oct(0o700)] * len(folders)
    assert oct(_mode(slice_path(root, name))) == oct(0o600)  # the temp file's inode
    assert _mode(claim) & 0o077 == 0  # only its name matters; never readable by others


def test_a_claim_is_left_only_with_its_file(tmp_path: Path) -> None:
    name = slice_name("k", 1000, 0)
    claim = claim_path(tmp_path, 1, name)
    assert write_atomically(tmp_path, name, b"first", "w0-")
    assert not write_atomically(tmp_path, name, b"second", "w1-", claim)
    assert not claim.exists()  # the file is another worker's
    other = slice_name("k", 1000, 1)
    assert write_atomically(tmp_path, other, b"third", "w1-", claim_path(tmp_path, 1, other))
    assert claim_path(tmp_path, 1, other).exists()


def test_an_older_installs_folders_are_tightened(tmp_path: Path) -> None:
    (tmp_path / "slices").mkdir(mode=0o755)
    (tmp_path / "slices").chmod(0o755)
    (tmp_path / "file").write_bytes(b"")
    tighten_dir(tmp_path / "slices")
    tighten_dir(tmp_path / "file")  # not a folder: left alone
    tighten_dir(tmp_path / "missing")
    assert _mode(tmp_path / "slices") == 0o700


def test_a_cached_read_gives_the_bytes_and_identity_a_plain_read_gives(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(300_000))
    plain = slice_files.read_with_identity(path)
    assert plain is not None
    assert plain[0] == path.read_bytes()
    try:
        assert slice_files.read_cached(path) == plain
    except BlockingIOError:
        pytest.skip("this file system cannot read with RWF_NOWAIT")
    assert slice_files.read_cached(tmp_path / "missing") is None
    path.write_bytes(b"shorter")
    assert slice_files.read_with_identity(path) != plain
