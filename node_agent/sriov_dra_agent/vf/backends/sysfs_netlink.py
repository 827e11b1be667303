"""Real SR-IOV NICs: discovery from sysfs, VF settings through netlink on the PF.

The message building (:func:`vf_requests`, :func:`encode_vf_request`), the reply
parsing (:func:`parse_vf_state`) and the driver-binding plans
(:func:`driver_binding_writes`, :func:`driver_restore_writes`) are pure and
unit-tested; the class around them only sends, writes and checks the outcome.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPBatch, IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from sriov_dra.errors import VfProgrammingError

from sriov_dra_agent.vf import discovery
from sriov_dra_agent.vf.backends.base import KERNEL_DEFAULT, USERSPACE_DRIVERS
from sriov_dra_agent.vf.inventory import Inventory, VfInfo
from sriov_dra_agent.vf.vf_settings import ApplyResult, LinkState, VfSettings

log = logging.getLogger(__name__)

RTEXT_FILTER_VF: Final = 1
"""ext_mask asking the kernel to include IFLA_VFINFO_LIST in a link reply."""

ETH_P_8021Q: Final = 0x8100
ETH_P_8021AD: Final = 0x88A8
_PROTO: Final = {"802.1q": ETH_P_8021Q, "802.1ad": ETH_P_8021AD}
_LINK_STATE: Final[dict[LinkState, int]] = {"auto": 0, "enable": 1, "disable": 2}
_LINK_STATE_NAME: Final[dict[int, LinkState]] = {v: k for k, v in _LINK_STATE.items()}

CLEAR_OVERRIDE: Final = "\n"
"""What to write to driver_override to unset it (a bare newline; Python writes nothing
for an empty string)."""
_KERNEL_DRIVER_FIX: Final = "load the VF's kernel driver (e.g. iavf, mlx5_core) and check dmesg"


def vf_requests(vf_index: int, changes: VfSettings) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """One pyroute2 ``vf=`` spec per kernel attribute, with the settings it carries.

    Sent one by one, as sriov-cni does, so that a setting the driver lacks (e.g.
    link_state on igb) is reported on its own and does not block the others. A
    fresh dict each time: pyroute2 pops keys out of the dict it is given.
    """
    out: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    if changes.vlan is not None:
        vlan = {"vlan": changes.vlan, "qos": changes.qos or 0}
        if changes.proto == "802.1ad":
            # Only IFLA_VF_VLAN_LIST carries the protocol.
            spec: dict[str, Any] = {"vf": vf_index, "vlan": [{**vlan, "proto": ETH_P_8021AD}]}
        else:
            spec = {"vf": vf_index, "vlan": vlan}
        out.append((("vlan", "qos", "proto"), spec))
    if changes.mac is not None:
        out.append((("mac",), {"vf": vf_index, "mac": changes.mac}))
    if changes.max_tx_rate is not None or changes.min_tx_rate is not None:
        rate = {"min_tx_rate": changes.min_tx_rate or 0, "max_tx_rate": changes.max_tx_rate or 0}
        out.append((("min_tx_rate", "max_tx_rate"), {"vf": vf_index, "rate": rate}))
    if changes.spoofchk is not None:
        out.append((("spoofchk",), {"vf": vf_index, "spoofchk": int(changes.spoofchk)}))
    if changes.trust is not None:
        out.append((("trust",), {"vf": vf_index, "trust": int(changes.trust)}))
    if changes.link_state is not None:
        state = _LINK_STATE[changes.link_state]
        out.append((("link_state",), {"vf": vf_index, "link_state": state}))
    return out


def encode_vf_request(pf_index: int, spec: dict[str, Any]) -> bytes:
    """The RTM_NEWLINK message ``ip link set <pf> vf ...`` would send (not sent)."""
    batch = IPBatch()
    batch.link("set", index=pf_index, vf=dict(spec))
    return bytes(batch.batch)


def parse_vf_state(msg: Any, vf_index: int) -> VfSettings:
    """VF ``vf_index``'s settings from a link reply made with ``ext_mask=1``.

    Raises :class:`VfProgrammingError` when the reply has no such VF.
    """
    vfinfo = msg.get("IFLA_VFINFO_LIST")
    for info in vfinfo.get_attrs("IFLA_VF_INFO") if vfinfo is not None else []:
        mac_attr = info.get("IFLA_VF_MAC")
        if mac_attr is None or mac_attr["vf"] != vf_index:
            continue
        vlan = info.get("IFLA_VF_VLAN")
        proto = ETH_P_8021Q
        vlan_list = info.get("IFLA_VF_VLAN_LIST")
        if vlan_list is not None:
            entries = vlan_list.get_attrs("IFLA_VF_VLAN_INFO")
            if entries:
                proto = entries[0]["proto"]
        rate = info.get("IFLA_VF_RATE")
        spoof = info.get("IFLA_VF_SPOOFCHK")
        trust = info.get("IFLA_VF_TRUST")
        link_state = info.get("IFLA_VF_LINK_STATE")
        return VfSettings(
            mac=str(mac_attr["mac"]).lower(),
            vlan=vlan["vlan"] if vlan is not None else None,
            qos=vlan["qos"] if vlan is not None else None,
            proto="802.1ad" if proto == ETH_P_8021AD else "802.1q",
            spoofchk=bool(spoof["spoofchk"]) if spoof is not None else None,
            trust=bool(trust["trust"]) if trust is not None else None,
            link_state=_LINK_STATE_NAME.get(link_state["link_state"])
            if link_state is not None
            else None,
            min_tx_rate=rate["min_tx_rate"] if rate is not None else None,
            max_tx_rate=rate["max_tx_rate"] if rate is not None else None,
        )
    raise VfProgrammingError(
        f"the PF reports no VF {vf_index}",
        field="sriov_numvfs",
        fix="check that the VF still exists (sriov_numvfs) and rediscover",
    )


def driver_binding_writes(pci: str, current: str | None, target: str) -> list[tuple[str, str]]:
    """The sysfs writes (path under the sysfs root, content) that rebind ``pci`` to ``target``.

    A driver name goes into driver_override, so that only ``target`` matches the device
    and the probe cannot pick the old driver again; a no-op when already bound.
    :data:`KERNEL_DEFAULT` unsets driver_override (:data:`CLEAR_OVERRIDE`) so the probe
    picks the kernel's own match; it always rebinds.
    """
    device = f"bus/pci/devices/{pci}"
    if target == KERNEL_DEFAULT:
        writes = [(f"{device}/driver_override", CLEAR_OVERRIDE)]
    elif current == target:
        return []
    else:
        writes = [(f"{device}/driver_override", target)]
    if current is not None:
        writes.append((f"{device}/driver/unbind", pci))
    writes.append(("bus/pci/drivers_probe", pci))
    return writes


def driver_restore_writes(
    pci: str,
    *,
    current: str | None,
    current_override: str | None,
    original: str | None,
    original_override: str | None,
) -> list[tuple[str, str]]:
    """The sysfs writes that put ``pci`` back on driver ``original`` (``None``: unbound)
    with driver_override ``original_override`` (``None``: unset), as it was found.

    Rebinding needs the override set to ``original``; it is then reset to what it
    was, so a later probe is as free (or as pinned) as before. Empty when nothing differs.
    """
    device = f"bus/pci/devices/{pci}"
    writes: list[tuple[str, str]] = []
    override = current_override
    if original is None:
        if current is not None:
            writes.append((f"{device}/driver/unbind", pci))
    elif current != original:
        writes = driver_binding_writes(pci, current, original)
        override = original
    if override != original_override:
        writes.append((f"{device}/driver_override", original_override or CLEAR_OVERRIDE))
    return writes


class SysfsNetlinkBackend:
    """Real hardware: sysfs under ``sysfs_root``, netlink in the agent's own netns."""

    kind = "sysfs"

    def __init__(self, *, node: str, sysfs_root: Path = Path("/sys")) -> None:
        self.node = node
        self.sysfs_root = sysfs_root
        self._lock = threading.Lock()

    def discover(self) -> Inventory:
        return discovery.discover(self.node, self.sysfs_root)

    def present(self, pci: str) -> bool:
        return (self.sysfs_root / "bus/pci/devices" / pci).is_dir()

    def hotplug_dir(self) -> Path | None:
        return None  # sysfs has no inotify: kernel uevents tell

    def host_netns(self) -> str | None:
        return None

    def _pf_index(self, ipr: IPRoute, vf: VfInfo) -> int:
        found = ipr.link_lookup(ifname=vf.pf_name)
        if not found:
            raise VfProgrammingError(
                f"PF netdev {vf.pf_name} not found",
                field="pf",
                fix="check the PF is up and named as discovered; restart discovery",
            )
        return int(found[0])

    def read_vf_state(self, vf: VfInfo) -> VfSettings:
        with IPRoute() as ipr:
            (msg,) = ipr.link("get", index=self._pf_index(ipr, vf), ext_mask=RTEXT_FILTER_VF)
            return parse_vf_state(msg, vf.vf_index)

    def apply_vf_settings(self, vf: VfInfo, changes: VfSettings) -> ApplyResult:
        applied: list[str] = []
        unsupported: dict[str, str] = {}
        with self._lock, IPRoute() as ipr:
            pf_index = self._pf_index(ipr, vf)
            for names, spec in vf_requests(vf.vf_index, changes):
                wanted = [n for n in names if getattr(changes, n) is not None]
                try:
                    ipr.link("set", index=pf_index, vf=spec)
                except NetlinkError as exc:
                    if exc.code == errno.EOPNOTSUPP:
                        for name in wanted:
                            unsupported[name] = f"driver of {vf.pf_name} does not support it"
                        continue
                    raise VfProgrammingError(
                        f"setting {', '.join(wanted)} on {vf.pf_name} vf {vf.vf_index} "
                        f"failed: {exc}",
                        field=wanted[0],
                        fix="check the value against the NIC's limits",
                    ) from exc
                applied.extend(wanted)
        return ApplyResult(applied=tuple(applied), unsupported=unsupported)

    def current_driver(self, vf: VfInfo) -> str | None:
        link = self.sysfs_root / "bus/pci/devices" / vf.pci_address / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def driver_override(self, vf: VfInfo) -> str | None:
        path = self.sysfs_root / "bus/pci/devices" / vf.pci_address / "driver_override"
        try:
            value = path.read_text().strip()
        except OSError:
            return None
        return None if value in ("", "(null)") else value

    def _write(self, writes: list[tuple[str, str]], fix: str) -> None:
        for path, content in writes:
            try:
                (self.sysfs_root / path).write_text(content)
            except OSError as exc:
                raise VfProgrammingError(
                    f"writing {content!r} to {path} failed: {exc}", field="driver", fix=fix
                ) from exc

    def bind_driver(self, vf: VfInfo, driver: str) -> None:
        pci = vf.pci_address
        writes = driver_binding_writes(pci, self.current_driver(vf), driver)
        if driver != KERNEL_DEFAULT:
            self._write(writes, f"check that driver {driver!r} is loaded (modprobe {driver})")
            if writes and self.current_driver(vf) != driver:
                raise VfProgrammingError(
                    f"VF {pci} is bound to {self.current_driver(vf)!r}, "
                    f"not {driver!r}, after drivers_probe",
                    field="driver",
                    fix=f"load {driver!r} and check dmesg for its probe error",
                )
            return
        self._write(writes, _KERNEL_DRIVER_FIX)
        bound = self.current_driver(vf)
        if bound is None:
            raise VfProgrammingError(
                f"VF {pci} has no driver after drivers_probe with driver_override unset",
                field="driver",
                fix=_KERNEL_DRIVER_FIX,
            )
        if bound in USERSPACE_DRIVERS:
            # It matched by device ID (new_id, or the module's ids= parameter).
            raise VfProgrammingError(
                f"VF {pci} is bound to userspace driver {bound!r} after drivers_probe "
                "with driver_override unset",
                field="driver",
                fix=f"remove the VF's ID from {bound} (echo '{vf.vendor} {vf.device_id}' > "
                f"/sys/bus/pci/drivers/{bound}/remove_id) and {_KERNEL_DRIVER_FIX}",
            )

    def restore_driver(self, vf: VfInfo, driver: str | None, override: str | None) -> None:
        pci = vf.pci_address
        writes = driver_restore_writes(
            pci,
            current=self.current_driver(vf),
            current_override=self.driver_override(vf),
            original=driver,
            original_override=override,
        )
        fix = (
            f"load {driver!r} and check dmesg for its probe error"
            if driver is not None
            else f"unbind {pci} by hand (it was found without a driver)"
        )
        self._write(writes, fix)
        bound = self.current_driver(vf)
        if bound != driver:
            raise VfProgrammingError(
                f"VF {pci} is bound to {bound!r}, not its original driver {driver!r}, "
                "after restoring it",
                field="driver",
                fix=fix,
            )

    def is_vf_netdev(self, link: Any, pci: str) -> bool:
        # The kernel names a VF netdev's parent device: its PCI address.
        return bool(link.get("IFLA_PARENT_DEV_NAME") == pci)

    def host_netdev(self, vf: VfInfo) -> str | None:
        try:
            names = sorted(os.listdir(self.sysfs_root / "bus/pci/devices" / vf.pci_address / "net"))
        except OSError:
            return None
        return names[0] if names else None

    def repair(self) -> list[str]:
        return []
