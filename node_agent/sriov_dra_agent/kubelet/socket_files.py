"""Unix socket paths of the agent's servers: length check and stale-file removal."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

MAX_SOCKET_PATH: Final = 107
"""sockaddr_un.sun_path is 108 bytes including the terminating NUL."""


class SocketPathError(OSError):
    """A socket path that cannot be bound; the message names the path and the fix."""


def prepare_socket_path(path: Path) -> None:
    """Create the parent directory and remove a stale socket left by a previous run.

    Anything at ``path`` that is not a socket is left alone and reported: we
    only delete what is ours to delete.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise SocketPathError(
            f"socket path {str(path)!r} is {len(os.fsencode(path))} bytes, more than the "
            f"{MAX_SOCKET_PATH} a unix socket address holds; fix: configure a shorter directory"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(
            f"{str(path)!r} exists and is not a socket; fix: remove it or configure another path"
        )
    path.unlink()


def remove_socket(path: Path) -> None:
    """Remove our socket file if it is still there."""
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
