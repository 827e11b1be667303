"""What a dev cluster with real nodes holds on this machine, counted, to find leaks.

A snapshot lists, for one state dir: the processes of the cluster and its nodes,
the mounts this machine sees of them, network namespaces, cgroups, host-local
leases and iptables rules of this machine's own network namespace.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
NODE_PATHS = ("/var/lib/kubelet", "/run/containerd", "/var/lib/containerd", "/run/netns/cni-")


def _process_keys(state_dir: Path) -> frozenset[str]:
    """``pid:start`` of every process of the cluster: by command line or by mount namespace."""
    init_mnt = os.readlink("/proc/self/ns/mnt")
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            mnt = os.readlink(entry / "ns" / "mnt")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ours = str(state_dir) in cmdline or "containerd-shim" in cmdline or mnt != init_mnt
        if ours:
            start = stat[stat.rindex(")") + 2 :].split()[19]
            found.add(f"{entry.name}:{start}:{cmdline[:80]}")
    return frozenset(found)


def _mounts(state_dir: Path) -> frozenset[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return frozenset(
        line for line in lines if str(state_dir) in line or any(f" {p}" in line for p in NODE_PATHS)
    )


def _netns() -> frozenset[str]:
    base = Path("/var/run/netns")
    return frozenset(p.name for p in base.iterdir()) if base.exists() else frozenset()


def _cgroups() -> frozenset[str]:
    found = set()
    for controller in CGROUP_ROOT.iterdir():
        if controller.is_dir() and not controller.is_symlink():
            for path in controller.rglob("*"):
                if path.is_dir() and "process_api" not in path.parts:
                    found.add(str(path))
    return frozenset(found)


def _leases(state_dir: Path) -> frozenset[str]:
    roots = [Path("/var/lib/cni/networks"), *state_dir.glob("nodes/*/cni/networks")]
    return frozenset(
        str(p)
        for root in roots
        if root.is_dir()
        for p in root.glob("*/*")
        if not p.name.startswith(("last_reserved_ip", "lock"))
    )


def _iptables() -> frozenset[str]:
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    return frozenset(
        line for line in out.stdout.splitlines() if line and not line.startswith(("#", ":"))
    )


@dataclass(frozen=True)
class HostResources:
    """One snapshot; ``leaks_since`` names what appeared after an earlier one."""

    processes: frozenset[str]
    mounts: frozenset[str]
    node_netns: frozenset[str]
    cgroups: frozenset[str]
    leases: frozenset[str]
    iptables_rules: frozenset[str]

    @classmethod
    def snapshot(cls, state_dir: Path) -> HostResources:
        """Count everything now."""
        return cls(
            processes=_process_keys(state_dir),
            mounts=_mounts(state_dir),
            node_netns=_netns(),
            cgroups=_cgroups(),
            leases=_leases(state_dir),
            iptables_rules=_iptables(),
        )

    def leaks_since(self, before: HostResources) -> dict[str, list[str]]:
        """Per kind, what this snapshot has that ``before`` had not (empty: nothing leaked)."""
        leaks = {}
        for kind in ("processes", "mounts", "node_netns", "cgroups", "leases", "iptables_rules"):
            new = sorted(getattr(self, kind) - getattr(before, kind))
            if new:
                leaks[kind] = new
        return leaks
