"""Crash-safe file replacement for every file the agent writes.

The kubelet checkpoint, CDI specs, VF records, the host hook script and the
simulated NIC's markers all go through :func:`write_atomically`. A reader (the
agent after a restart, a container runtime's CDI cache, a runtime executing the
hook) must see either the old content or the new, never a torn file, even if the
agent dies or the disk fills up mid-write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, fsync, rename, fsync dir.

    The temp file is named ``.<name>.<random>.tmp`` so that directory watchers
    looking for ``*.json`` (the CDI cache) ignore it. On any failure the temp
    file is removed and ``path`` keeps its previous content.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_directory(directory)


def remove_durably(path: Path) -> bool:
    """Unlink ``path`` and fsync its directory; False when it did not exist."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(path.parent)
    return True
