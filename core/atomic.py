"""Atomic writes: a reader sees the old file or the new one, never half of one.

Every file the engine writes goes through here: temp file (or folder) beside the target, fsync,
then rename, which is atomic on one filesystem on POSIX and Windows (os.replace).

The temporary file or folder is made private (mkstemp's 0600, mkdtemp's 0700), so before it takes the target's
name it gets the permissions any new file gets (0644 and 0755 under the usual umask): an exported model is read
by other programs, such as a llama.cpp server or Ollama's service running as another user, which were refused a
private file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

UMASK = os.umask(0o022)  # read once, at import (in the main thread): reading it means setting it
os.umask(UMASK)


@contextlib.contextmanager
def temp_file(target: str | os.PathLike):
    """Yield a temporary path beside `target` for a writer that opens files by name (and closes them
    before the block ends); on success the file is synced and renamed to `target`, on failure removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with temp_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def folder(target: str | os.PathLike, replace: bool = False):
    """Yield a temporary folder beside `target`; on success it becomes `target` in one rename.

    If the body raises, the temporary folder is removed and `target` is untouched. With
    replace=True an existing target is swapped out (moved aside, then deleted).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not replace:
        raise FileExistsError(f"{target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~UMASK)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """`target` holding `source`'s bytes: a hard link where both are on one drive (no second copy of a file of many
    GB), else a copy. Meant for a target inside a `folder()` being built, which makes the whole appear at once."""
    try:
        os.link(source, target)
    except OSError:  # another drive, or a filesystem without hard links
        shutil.copyfile(source, target)
