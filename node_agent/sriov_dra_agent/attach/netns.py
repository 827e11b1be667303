"""Network namespaces by path: opened without ever creating one, told apart by inode.

A pod's netns is named by a path (``/proc/<pid>/ns/net``, ``/var/run/netns/<name>``);
a ``/proc/<pid>`` path can be reused by another process, so a netns is identified by
the (device, inode) of that file (:func:`netns_id`). Namespaces are always opened with
``flags=0``: a missing one is an error (:class:`~sriov_dra.errors.NetnsNotFound`),
never silently created. Opening a socket in another netns costs pyroute2 a fork
(~15-20 ms): :class:`NetnsSockets` keeps the node's host netns sockets open.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from sriov_dra.errors import NetnsNotFound, SriovDraError


def _not_found(path: str) -> NetnsNotFound:
    return NetnsNotFound(
        f"network namespace {path} does not exist",
        field="netns",
        fix="the pod's sandbox is gone; the runtime will retry with a new one",
    )


def netns_id(path: str) -> tuple[int, int]:
    """(device, inode) of a netns file: tells a reused ``/proc/<pid>`` path apart.

    Raises :class:`NetnsNotFound` when the path does not exist.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise _not_found(path) from exc
    return st.st_dev, st.st_ino


def netns_alive(path: str, expected: tuple[int, int] | None) -> bool:
    """True when ``path`` exists and (if given) is still the same netns."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return expected is None or (st.st_dev, st.st_ino) == tuple(expected)


def host_netns_path(host_netns: str | None) -> str:
    """The path to move a VF back to: the backend's host netns or the agent's own."""
    return host_netns or f"/proc/{os.getpid()}/ns/net"


def netns_socket(path: str) -> IPRoute:
    """A new IPRoute in netns ``path`` (the caller closes it); never creates a netns."""
    try:
        return IPRoute(netns=path, flags=0)
    except FileNotFoundError as exc:
        raise _not_found(path) from exc


@contextlib.contextmanager
def open_netns(path: str | None) -> Iterator[IPRoute]:
    """IPRoute in netns ``path`` (``None`` = ours), closed on exit; never creates a netns."""
    if path is None:
        with IPRoute() as ipr:
            yield ipr
        return
    with netns_socket(path) as ipr:
        yield ipr


class NetnsSockets:
    """IPRoute sockets into long-lived netns (the node's host netns), kept open for reuse.

    An IPRoute must stay with the thread that made it, and the agent calls the
    hardware from ``asyncio.to_thread``'s pool, so each thread keeps its own. A
    socket is reopened when its path names another netns now (a rebuilt simulated
    node) and dropped after any error that is not a netlink answer. Never use it
    for pod netns: an open socket keeps its netns alive.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[IPRoute] = []
        self._guard = threading.Lock()

    def _cache(self) -> dict[str | None, tuple[tuple[int, int] | None, IPRoute]]:
        cache: dict[str | None, tuple[tuple[int, int] | None, IPRoute]] | None = getattr(
            self._local, "sockets", None
        )
        if cache is None:
            cache = self._local.sockets = {}
        return cache

    def _drop(self, path: str | None) -> None:
        entry = self._cache().pop(path, None)
        if entry is not None:
            with self._guard:
                if entry[1] in self._all:
                    self._all.remove(entry[1])
            with contextlib.suppress(Exception):
                entry[1].close()

    @contextlib.contextmanager
    def open(self, path: str | None) -> Iterator[IPRoute]:
        """This thread's socket in netns ``path`` (``None`` = ours), opened on first use."""
        ident = netns_id(path) if path is not None else None
        entry = self._cache().get(path)
        if entry is not None and entry[0] != ident:
            self._drop(path)
            entry = None
        if entry is None:
            ipr = IPRoute() if path is None else netns_socket(path)
            with self._guard:
                self._all.append(ipr)
            entry = (ident, ipr)
            self._cache()[path] = entry
        try:
            yield entry[1]
        except (NetlinkError, SriovDraError):
            raise
        except BaseException:
            self._drop(path)
            raise

    def close(self) -> None:
        """Close every thread's sockets (the threads reopen on their next use)."""
        with self._guard:
            sockets, self._all = self._all, []
        for ipr in sockets:
            with contextlib.suppress(Exception):
                ipr.close()
        self._local = threading.local()
