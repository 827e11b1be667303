"""VF backends: real SR-IOV hardware (sysfs + netlink) and the simulated NIC.

Both implement :class:`sriov_dra_agent.vf.backends.base.VfBackend`; pick one with
:func:`make_backend`.
"""

from __future__ import annotations

from pathlib import Path

from sriov_dra_agent.vf.backends.base import VfBackend

BACKENDS = ("sysfs", "simulated")


def make_backend(
    kind: str, *, node: str, sysfs_root: Path | None = None, sim_prefix: str = "sriovsim"
) -> VfBackend:
    """The backend named ``kind`` for ``node``.

    ``sysfs``: real NICs under ``sysfs_root`` (default ``/sys``), netdevs in the
    agent's own netns. ``simulated``: the simulated NIC of ``node`` built by
    :mod:`sriov_dra_agent.vf.backends.simulated_nic`; ``sysfs_root`` (default
    ``/run/sriov-dra-sim/<node>/sys``) must be ``<sim root>/<node>/sys``, since the
    NIC keeps its per-VF data in that tree.
    """
    if kind == "sysfs":
        from sriov_dra_agent.vf.backends.sysfs_netlink import SysfsNetlinkBackend

        return SysfsNetlinkBackend(node=node, sysfs_root=sysfs_root or Path("/sys"))
    if kind == "simulated":
        from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
        from sriov_dra_agent.vf.backends.simulated_nic import DEFAULT_ROOT, SimulatedNic

        if sysfs_root is None:
            nic = SimulatedNic(node, prefix=sim_prefix, root=DEFAULT_ROOT)
        elif sysfs_root.name == "sys" and sysfs_root.parent.name == node:
            nic = SimulatedNic(node, prefix=sim_prefix, root=sysfs_root.parent.parent)
        else:
            raise ValueError(
                f"simulated sysfs root {sysfs_root} is not <sim root>/{node}/sys; "
                f"pass e.g. {DEFAULT_ROOT}/{node}/sys or leave it unset"
            )
        return SimulatedBackend(nic)
    raise ValueError(f"unknown backend {kind!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "VfBackend", "make_backend"]
