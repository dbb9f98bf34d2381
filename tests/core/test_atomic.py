"""Atomic writes (core/atomic.py): what is written appears whole under its name with the permissions any new file
gets (an export was private before: 0600 files in a 0700 folder, which a llama.cpp server or Ollama's service running
as another user could not read), and a failed write leaves nothing behind."""

from __future__ import annotations

import stat

import pytest

from core import atomic


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_get_the_usual_permissions(tmp_path):
    written = atomic.write_text(tmp_path / "a" / "note.txt", "hello")
    assert written.read_text() == "hello" and mode(written) == 0o666 & ~atomic.UMASK
    with atomic.folder(tmp_path / "export") as tmp:
        atomic.write_json(tmp / "export.json", {"ok": True})
    assert mode(tmp_path / "export") == 0o777 & ~atomic.UMASK
    assert mode(tmp_path / "export" / "export.json") == 0o666 & ~atomic.UMASK
    assert atomic.UMASK & 0o044 or mode(tmp_path / "export") & 0o005  # others may read it under the usual umask


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic.folder(tmp_path / "export") as tmp:
            atomic.write_text(tmp / "part.bin", "half")
            raise RuntimeError("cancelled")
    with pytest.raises(RuntimeError):
        with atomic.temp_file(tmp_path / "file.bin") as tmp:
            tmp.write_text("half")
            raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []
