"""Network namespaces by path: opened without ever creating one, told apart by inode.

A pod's netns is named by a path (``/proc/<pid>/ns/net``, ``/var/run/netns/<name>``);
a ``/proc/<pid>`` path can be reused by another process, so a netns is identified by
the (device, inode) of that file (:func:`netns_id`). Namespaces are always opened with
``flags=0``: a missing one is an error (:class:`~sriov_dra.errors.NetnsNotFound`),
never silently created. A socket in another netns is made by a short-lived thread
that enters it (:func:`netns_socket`), not by pyroute2's forked helper process (a
fork of the agent costs ~20 ms); :class:`NetnsSockets` keeps the node's host netns
sockets open all the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import threading
from collections.abc import Iterator
from typing import Final

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from sriov_dra.errors import NetnsNotFound, SriovDraError

CLONE_NEWNET: Final = 0x40000000
NETLINK_ROUTE: Final = 0
_libc = ctypes.CDLL(None, use_errno=True)


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


def _netlink_socket_in(ns_fd: int) -> socket.socket:
    """A rtnetlink socket made inside netns ``ns_fd``, by a thread that enters it and ends.

    A netns is per thread, and a socket belongs to the netns of the thread that
    created it. The thread ends right after, so no other work ever runs inside the
    pod's netns (nor needs to find its way back).
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_create() -> None:
        try:
            if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=enter_and_create, name="netns-socket")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


def netns_socket(path: str) -> IPRoute:
    """A new IPRoute in netns ``path`` (the caller closes it); never creates a netns.

    Raises :class:`NetnsNotFound` when ``path`` does not exist or is not a network
    namespace.
    """
    try:
        ns_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise _not_found(path) from exc
    try:
        sock = _netlink_socket_in(ns_fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        raise NetnsNotFound(
            f"{path} is not a network namespace",
            field="netns",
            fix="pass a netns path such as /proc/<pid>/ns/net or /var/run/netns/<name>",
        ) from exc
    finally:
        os.close(ns_fd)
    fd = sock.detach()
    try:
        return IPRoute(fileno=fd)
    except BaseException:
        os.close(fd)
        raise


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
