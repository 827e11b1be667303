"""A software SR-IOV NIC made of real kernel objects, for machines without one.

Layout for node ``N`` with prefix ``P`` (default ``sriovsim``):

- netns ``P-N`` (the node's "host"): PF netdevs (``simpf0``) and VF netdevs
  (``simpf0v3``), each one end of a veth pair, nothing else; as on real hardware.
- netns ``P-N-esw`` (the PFs' embedded switches): per PF index ``i`` and VLAN ``v``
  a bridge ``b<i>v<v>``; VF ``n``'s switch port ``p<i>vf<n>`` (the other veth end)
  joins the bridge of its VLAN, the PF's port ``p<i>pf`` joins ``b<i>v0``, and
  each bridge has an uplink ``u<i>v<v>`` into the fabric. No bridge VLAN filtering
  or 802.1Q exist on the target kernel, so a VF's VLAN is which bridge its port
  joins: VFs on different VLANs are really isolated.
- netns ``P-fabric`` (shared by all nodes, the top-of-rack switch): per VLAN a
  bridge ``fv<v>`` joining every node's uplink ports (``f<hash6>v<v>``).
- A sysfs-shaped tree under ``<root>/<N>/sys`` that discovery walks, whose marker
  files keep the "PF firmware" memory of each VF
  (:mod:`~sriov_dra_agent.vf.backends.simulated_sysfs`).

A VF netdev carries the alias ``sriovsim:<pci>`` so it can be found after renames
and netns moves. When a pod netns holding a VF end is destroyed the kernel destroys
the whole veth pair (a real VF would return to the host): :meth:`ensure_vfs`
recreates such VFs with their original name and MAC and their saved settings.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from sriov_dra_agent.vf.backends.simulated_sysfs import SimulatedSysfs, pf_pci, vf_pci

DEFAULT_ROOT: Final = Path("/run/sriov-dra-sim")
ALIAS_PREFIX: Final = "sriovsim:"
MAX_VFS: Final = 64


@dataclass(frozen=True)
class SimPf:
    """One simulated PF to build."""

    name: str = "simpf0"
    total_vfs: int = 8
    num_vfs: int = 4
    numa_node: int = 0


def _netns_path(name: str) -> str:
    return f"/var/run/netns/{name}"


def vf_alias(pci: str) -> str:
    """IFLA_IFALIAS of a simulated VF netdev; it survives renames and netns moves."""
    return f"{ALIAS_PREFIX}{pci}"


class SimulatedNic:
    """Build, change and tear down the simulated SR-IOV NIC of one node."""

    def __init__(self, node: str, *, prefix: str = "sriovsim", root: Path = DEFAULT_ROOT) -> None:
        self.node = node
        self.prefix = prefix
        self.root = root
        self.host_ns = f"{prefix}-{node}"
        self.esw_ns = f"{prefix}-{node}-esw"
        self.fabric_ns = f"{prefix}-fabric"
        self.sysfs_root = root / node / "sys"
        self.tree = SimulatedSysfs(self.sysfs_root)

    # --- paths and names -------------------------------------------------------------

    @property
    def host_netns_path(self) -> str:
        return _netns_path(self.host_ns)

    def _fabric_port(self, pf_index: int, vlan: int) -> str:
        digest = hashlib.sha256(f"{self.prefix}/{self.node}/{pf_index}".encode()).hexdigest()
        return f"f{digest[:6]}v{vlan}"

    def _mac(self, pf_index: int, vf_index: int | None) -> str:
        key = f"{self.prefix}/{self.node}/{pf_index}/{vf_index}"
        raw = hashlib.sha256(key.encode()).digest()[:5]
        return "02:" + ":".join(f"{b:02x}" for b in raw)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes of this node's NIC across threads and processes."""
        (self.root / self.node).mkdir(parents=True, exist_ok=True)
        with open(self.root / self.node / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _pf_marker(self, pf_name: str) -> dict[str, Any]:
        for marker in self.tree.pfs():
            if marker["ifname"] == pf_name:
                return marker
        raise KeyError(f"node {self.node} has no simulated PF {pf_name!r}")

    # --- kernel objects -----------------------------------------------------------------

    @staticmethod
    def _ensure_netns(name: str) -> None:
        if name not in netns.listnetns():
            with contextlib.suppress(FileExistsError):
                netns.create(name)

    @staticmethod
    def _lookup(ipr: IPRoute, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return int(found[0]) if found else None

    def _ensure_bridge(self, esw: IPRoute, pf_index: int, vlan: int) -> int:
        """Bridge ``b<i>v<vlan>`` with its uplink into the fabric bridge ``fv<vlan>``."""
        name = f"b{pf_index}v{vlan}"
        index = self._lookup(esw, name)
        if index is not None:
            return index
        esw.link("add", ifname=name, kind="bridge")
        index = self._lookup(esw, name)
        assert index is not None
        esw.link("set", index=index, state="up")
        uplink, fabric_port = f"u{pf_index}v{vlan}", self._fabric_port(pf_index, vlan)
        esw.link("add", ifname=uplink, kind="veth", peer={"ifname": fabric_port})
        up_index = self._lookup(esw, uplink)
        fp_index = self._lookup(esw, fabric_port)
        esw.link("set", index=up_index, master=index, state="up")
        self._ensure_netns(self.fabric_ns)
        esw.link("set", index=fp_index, net_ns_fd=_netns_path(self.fabric_ns))
        with IPRoute(netns=self.fabric_ns, flags=0) as fabric:
            fabric_bridge = self._lookup(fabric, f"fv{vlan}")
            if fabric_bridge is None:
                with contextlib.suppress(NetlinkError):
                    fabric.link("add", ifname=f"fv{vlan}", kind="bridge")
                fabric_bridge = self._lookup(fabric, f"fv{vlan}")
                fabric.link("set", index=fabric_bridge, state="up")
            port = self._lookup(fabric, fabric_port)
            fabric.link("set", index=port, master=fabric_bridge, state="up")
        return index

    def _create_pair(
        self,
        esw: IPRoute,
        host_name: str,
        port: str,
        *,
        mac: str,
        alias: str,
        bridge: int,
        up: bool,
    ) -> None:
        """veth ``host_name`` (moved to the host netns) <-> ``port`` (on ``bridge``)."""
        stale = self._lookup(esw, port)
        if stale is not None:
            esw.link("del", index=stale)
        esw.link("add", ifname=host_name, kind="veth", peer={"ifname": port}, address=mac)
        host_index = self._lookup(esw, host_name)
        esw.link("set", index=host_index, ifalias=alias)
        esw.link("set", index=host_index, net_ns_fd=self.host_netns_path)
        esw.link("set", index=self._lookup(esw, port), master=bridge, state="up" if up else "down")

    def _create_vf(self, esw: IPRoute, marker: dict[str, Any]) -> None:
        bridge = self._ensure_bridge(esw, int(marker["pf_index"]), int(marker["vlan"]))
        self._create_pair(
            esw,
            marker["ifname"],
            marker["port"],
            mac=marker["admin_mac"],
            alias=vf_alias(marker["pci"]),
            bridge=bridge,
            up=marker["link_state"] != "disable",
        )

    def build(self, pfs: Sequence[SimPf] = (SimPf(),)) -> None:
        """Create the node's namespaces, switches, PFs, VFs and sysfs tree. Idempotent."""
        with self._locked():
            for ns in (self.host_ns, self.esw_ns, self.fabric_ns):
                self._ensure_netns(ns)
            with (
                IPRoute(netns=self.esw_ns, flags=0) as esw,
                IPRoute(netns=self.host_ns, flags=0) as host,
            ):
                for ns_ipr in (esw, host):
                    ns_ipr.link("set", index=self._lookup(ns_ipr, "lo"), state="up")
                for pf_index, pf in enumerate(pfs):
                    self._build_pf(esw, host, pf_index, pf)

    def _build_pf(self, esw: IPRoute, host: IPRoute, pf_index: int, pf: SimPf) -> None:
        if not 0 < pf.total_vfs <= MAX_VFS or not 0 <= pf.num_vfs <= pf.total_vfs:
            raise ValueError(f"PF {pf.name}: want 0 <= num_vfs <= total_vfs <= {MAX_VFS}")
        if len(f"{pf.name}v{MAX_VFS - 1}") > 15:
            raise ValueError(
                f"PF name {pf.name!r} too long: VF names {pf.name}vN must fit 15 chars"
            )
        pci = pf_pci(pf_index)
        marker = {
            "role": "pf",
            "pci": pci,
            "pf_index": pf_index,
            "ifname": pf.name,
            "total_vfs": pf.total_vfs,
            "numa_node": pf.numa_node,
        }
        self.tree.write_pf(marker, total_vfs=pf.total_vfs, numa=pf.numa_node)
        if self._lookup(host, pf.name) is None:
            bridge = self._ensure_bridge(esw, pf_index, 0)
            self._create_pair(
                esw,
                pf.name,
                f"p{pf_index}pf",
                mac=self._mac(pf_index, None),
                alias=f"{ALIAS_PREFIX}{pci}",
                bridge=bridge,
                up=True,
            )
            host.link("set", index=self._lookup(host, pf.name), state="up")
        self._set_num_vfs(esw, pf.name, pf.num_vfs)

    def set_num_vfs(self, pf_name: str, count: int) -> None:
        """Write ``sriov_numvfs``: create or remove VFs (discovery sees them on its next walk).

        Unlike some real drivers, going from N to M without passing through 0 is allowed.
        """
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            self._set_num_vfs(esw, pf_name, count)

    def _set_num_vfs(self, esw: IPRoute, pf_name: str, count: int) -> None:
        pf = self._pf_marker(pf_name)
        pf_index, total = int(pf["pf_index"]), int(pf["total_vfs"])
        if not 0 <= count <= total:
            raise ValueError(f"sriov_numvfs of {pf_name} must be 0..{total}, not {count}")
        current = self.tree.num_vfs(pf)
        for n in range(count):
            pci = vf_pci(pf_index, n)
            if not self.tree.has_vf(pf, n):
                marker: dict[str, Any] = {
                    "role": "vf",
                    "pci": pci,
                    "pf": pf_name,
                    "pf_index": pf_index,
                    "vf": n,
                    "ifname": f"{pf_name}v{n}",
                    "port": f"p{pf_index}vf{n}",
                    "mac": self._mac(pf_index, n),
                    "admin_mac": self._mac(pf_index, n),
                    "vlan": 0,
                    "link_state": "auto",
                }
                self.tree.add_vf(pf, n, marker)
                self._create_vf(esw, marker)
        for n in range(count, current):
            pci = vf_pci(pf_index, n)
            port = self._lookup(esw, str(self.tree.read_marker(pci)["port"]))
            if port is not None:
                esw.link("del", index=port)
            self.tree.remove_vf(pf, n)
        self.tree.set_num_vfs(pf, count)

    def remove_pf(self, pf_name: str) -> None:
        """Take PF ``pf_name`` out of the node, as a hot-unplug or a PF driver unbind does:
        its VFs go first (``sriov_numvfs`` 0), then its netdev, its switch and its PCI
        device. :meth:`build` with the PF puts it back (with no VFs' memory)."""
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            self._set_num_vfs(esw, pf_name, 0)
            pf = self._pf_marker(pf_name)
            pf_index = int(pf["pf_index"])
            # The PF's port (its host end, the PF netdev, goes with it), bridges and uplinks
            # (their fabric ends go with them, so the fabric is left as if it never had them).
            for link in esw.link("dump"):
                name = str(link.get("IFLA_IFNAME"))
                if name == f"p{pf_index}pf" or name.startswith((f"b{pf_index}v", f"u{pf_index}v")):
                    esw.link("del", index=int(link["index"]))
            self.tree.remove_pf(pf)

    def ensure_vfs(self) -> list[str]:
        """Recreate every VF whose veth pair is gone; returns the VF netdev names recreated.

        A pair is gone when its switch port is: a VF end living in a pod netns still has
        its port, so attached VFs are never duplicated.
        """
        recreated: list[str] = []
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            for marker in self.tree.vf_markers():
                if self._lookup(esw, marker["port"]) is None:
                    self._create_vf(esw, marker)
                    recreated.append(marker["ifname"])
        return recreated

    # --- "PF firmware": per-VF settings ------------------------------------------------

    @staticmethod
    def is_vf_netdev(link: Any, pci: str) -> bool:
        """Whether netlink link message ``link`` is VF ``pci``'s netdev (by its alias)."""
        return bool(link.get("IFLA_IFALIAS") == vf_alias(pci))

    def find_vf_netdev(self, host: IPRoute, pci: str) -> int | None:
        """Index of the VF netdev with ``pci``'s alias in the host netns, if it is there."""
        for link in host.link("dump"):
            if self.is_vf_netdev(link, pci):
                return int(link["index"])
        return None

    def set_vf_mac(self, pci: str, mac: str) -> None:
        """Admin MAC: saved, and set on the VF netdev when it is in the host netns."""
        with self._locked():
            self.tree.update_marker(pci, admin_mac=mac)
            with IPRoute(netns=self.host_ns, flags=0) as host:
                index = self.find_vf_netdev(host, pci)
                if index is not None:
                    host.link("set", index=index, address=mac)

    def set_vf_vlan(self, pci: str, vlan: int) -> None:
        """Move the VF's switch port onto the bridge of ``vlan``."""
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            marker = self.tree.update_marker(pci, vlan=vlan)
            bridge = self._ensure_bridge(esw, int(marker["pf_index"]), vlan)
            port = self._lookup(esw, marker["port"])
            if port is not None:
                esw.link("set", index=port, master=bridge)

    def set_vf_link_state(self, pci: str, state: str) -> None:
        """``disable`` takes the switch port down, so the VF sees no carrier; else up."""
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            marker = self.tree.update_marker(pci, link_state=state)
            port = self._lookup(esw, marker["port"])
            if port is not None:
                esw.link("set", index=port, state="down" if state == "disable" else "up")

    def set_uplink(self, pf_name: str, up: bool) -> None:
        """Pull or plug the PF's cable: its switch port and its uplinks into the fabric.

        Down, the PF netdev loses carrier (as a real PF whose link drops) and its VFs
        reach nothing beyond their own switch; up restores both.
        """
        pf_index = int(self._pf_marker(pf_name)["pf_index"])
        state = "up" if up else "down"
        with self._locked(), IPRoute(netns=self.esw_ns, flags=0) as esw:
            for link in esw.link("dump"):
                name = str(link.get("IFLA_IFNAME"))
                if name == f"p{pf_index}pf" or name.startswith(f"u{pf_index}v"):
                    esw.link("set", index=int(link["index"]), state=state)

    def vf_vlan(self, pci: str) -> int:
        """The VLAN whose bridge the VF's port is on now (kernel state, not the marker)."""
        with IPRoute(netns=self.esw_ns, flags=0) as esw:
            index = self._lookup(esw, self.tree.read_marker(pci)["port"])
            if index is None:
                raise LookupError(f"simulated VF {pci} has no switch port")
            (link,) = esw.link("get", index=index)
            master = link.get("IFLA_MASTER")
            (bridge,) = esw.link("get", index=master)
            return int(str(bridge.get("IFLA_IFNAME")).split("v", 1)[1])

    def _wait_fabric_ports_gone(self, pf_indexes: list[int], timeout: float = 5.0) -> None:
        """The kernel destroys a removed netns's links asynchronously; wait for our uplinks."""
        prefixes = tuple(self._fabric_port(i, 0)[:7] for i in pf_indexes)
        deadline = time.monotonic() + timeout
        with IPRoute(netns=self.fabric_ns, flags=0) as fabric:
            while time.monotonic() < deadline:
                names = [str(link.get("IFLA_IFNAME")) for link in fabric.link("dump")]
                if not any(name.startswith(prefixes) for name in names):
                    return
                time.sleep(0.05)

    # --- teardown -------------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove the node's namespaces and sysfs tree; the fabric goes with its last node."""
        pf_indexes = [int(m["pf_index"]) for m in self.tree.pfs()]
        with self._locked():
            for ns in (self.host_ns, self.esw_ns):
                if ns in netns.listnetns():
                    netns.remove(ns)
            shutil.rmtree(self.sysfs_root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.root / self.node / ".lock").unlink()
        with contextlib.suppress(OSError):
            (self.root / self.node).rmdir()
        if self.fabric_ns in netns.listnetns():
            self._wait_fabric_ports_gone(pf_indexes)
            self._remove_fabric_if_unused()

    def _remove_fabric_if_unused(self) -> None:
        try:
            with IPRoute(netns=self.fabric_ns, flags=0) as fabric:
                # Ports vanish with their node's esw netns; only bridges and lo mean unused.
                kinds = [
                    link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                    for link in fabric.link("dump")
                    if link.get("IFLA_IFNAME") != "lo"
                ]
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            return
        if all(kind == "bridge" for kind in kinds):
            with contextlib.suppress(FileNotFoundError):
                netns.remove(self.fabric_ns)
