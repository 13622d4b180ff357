"""The one atomic writer: a reader sees the old file or the whole new one; a failure leaves nothing behind."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from neurowidgets.core.storage import atomic_file, read_archive, write_archive


def test_the_file_appears_whole_when_the_block_ends(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with atomic_file(path) as file:
        file.write(b"new ")
        assert path.read_bytes() == b"old"  # not yet
        file.write(b"content")
    assert path.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_an_error_in_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_file(path) as file:
        file.write(b"half")
        raise KeyboardInterrupt
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def refuse(source, target):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="Read-only"), atomic_file(path) as file:
        file.write(b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_a_missing_directory_raises_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_file(tmp_path / "missing" / "f.bin"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_threads_writing_one_path_at_once_each_write_a_whole_file(tmp_path):
    path, barrier = tmp_path / "f.bin", threading.Barrier(4)

    def write(i: int) -> None:
        with atomic_file(path) as file:
            barrier.wait()  # every thread has its temporary file open
            file.write(bytes([i]) * 1000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    content = path.read_bytes()
    assert len(content) == 1000 and len(set(content)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_archives_are_written_through_it(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.float32), "b": np.ones((2, 3), dtype=np.float16)}
    path = write_archive(tmp_path / "sub" / "scan.npz", {"x": 1}, arrays)
    meta, read = read_archive(path)
    assert meta["x"] == 1 and set(read) == {"a", "b"}
    np.testing.assert_array_equal(read["b"], arrays["b"])
    assert [p.name for p in path.parent.iterdir()] == ["scan.npz"]
